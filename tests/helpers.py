"""Helpers shared by several test modules (test modules import this, never each other).

- A tiny exported text classifier: a random BertEncoderV2 with a hand-written vocabulary,
  exported by trainer.export; what export, predict, scoring and serving tests serve. The
  session-scoped `binary_model` fixture (conftest.py) exports it once per test session.
- A tiny Hugging Face BERT directory (safetensors), what trainer.convert reads.

The trainer's fake preprocessed data dirs live in trainer_fixtures.py.
"""
import json
import os

import bertcore  # noqa: F401  (before TensorFlow: selects Keras 2)
import numpy as np

# ------------------------------------------------------------------- the tiny exported classifier
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "quick", "brown", "fox", "jump", "##s",
         "over", "lazy", "dog", "why", "is", "a", "?", "how", "do", "you", "cat", "sleep"]
MAX_SEQ_LENGTH = 8
BERT_CONFIG = {"vocab_size": len(VOCAB), "hidden_size": 16, "num_hidden_layers": 1,
               "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16,
               "initializer_range": 0.5}  # Large weights: outputs that differ between texts.
TEXTS = ["The quick brown fox jumps", "why is a dog lazy?", "how do you sleep", "cat",
         "Über-unknown words !", ""]
PAIRS = ["a dog", "the cat sleeps", "", "why?", "fox", "brown"]
# 14 word pieces: longer than MAX_SEQ_LENGTH - 2, so it is truncated.
LONG_TEXT = "the quick brown fox jumps over the lazy dog how do you sleep"
# Far over the limit: 14 pieces x 4 = 56, 7x MAX_SEQ_LENGTH.
VERY_LONG_TEXT = "the quick brown fox jumps over the lazy dog why is a cat " * 4


def build_classifier(num_outputs, seed=0):
  """The trainer's classifier interface: dict of int32 [batch, seq] -> logits [batch, n]."""
  import tensorflow as tf
  import tf_keras
  from trainer import encoders
  tf_keras.utils.set_random_seed(seed)
  encoder = encoders.build_bert_encoder(BERT_CONFIG, dropout=0.0)
  inputs = {name: tf_keras.Input(shape=(None,), dtype=tf.int32, name=name)
            for name in ("input_word_ids", "input_mask", "input_type_ids")}
  pooled = encoder(inputs)["pooled_output"]
  logits = tf_keras.layers.Dense(
      num_outputs, kernel_initializer=tf_keras.initializers.RandomNormal(stddev=2.0))(pooled)
  return tf_keras.Model(inputs, logits)


def write_vocab(directory):
  path = os.path.join(directory, "vocab.txt")
  with open(path, "w") as f:
    f.write("\n".join(VOCAB) + "\n")
  return path


def tiny_setup(directory):
  """(vocab_path, TextEncoder) for the tiny vocabulary."""
  from bertcore import tokenization
  return write_vocab(directory), tokenization.TextEncoder(VOCAB, True, MAX_SEQ_LENGTH)


def export_binary_model(directory):
  """Exports a random tiny binary classifier (labels "0"/"1", threshold 0.5) to
  <directory>/export, its vocab.txt beside it; -> the export dir."""
  from trainer import export
  vocab_path, text_encoder = tiny_setup(str(directory))
  export_dir = os.path.join(str(directory), "export")
  export.export_saved_model(build_classifier(1), text_encoder, ["0", "1"], "binary", 0.5,
                            export_dir, vocab_path)
  return export_dir


def reference_probabilities(classifier, text_encoder, head, texts, pair_texts=None):
  """What the export must return, computed the preprocessing way: TextEncoder.encode, then
  padding to max_seq_length in NumPy (not the export's dynamic padding), then the classifier."""
  import tensorflow as tf
  ids, type_ids, _ = text_encoder.encode(
      tf.constant(texts), None if pair_texts is None else tf.constant(pair_texts))
  n = len(texts)
  word = np.zeros([n, MAX_SEQ_LENGTH], np.int32)
  types = np.zeros([n, MAX_SEQ_LENGTH], np.int32)
  mask = np.zeros([n, MAX_SEQ_LENGTH], np.int32)
  for i, (row, row_types) in enumerate(zip(ids.to_list(), type_ids.to_list())):
    word[i, :len(row)] = row
    types[i, :len(row)] = row_types
    mask[i, :len(row)] = 1
  logits = classifier({"input_word_ids": word, "input_mask": mask, "input_type_ids": types},
                      training=False).numpy().astype(np.float64)
  if head == "multiclass":
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
  probs = 1 / (1 + np.exp(-logits))
  return probs[:, 0] if head == "binary" else probs


def serve(loaded, texts, pair_texts=None):
  """The loaded export's text signature (or its pair signature) -> {output: NumPy array}."""
  import tensorflow as tf
  if pair_texts is None:
    out = loaded.signatures["serving_default"](text=tf.constant(texts, tf.string))
  else:
    out = loaded.signatures["serve_text_pair"](text=tf.constant(texts, tf.string),
                                               text_pair=tf.constant(pair_texts, tf.string))
  return {k: v.numpy() for k, v in out.items()}


# -------------------------------------------------------------- a tiny Hugging Face BERT directory
HF_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
            "a", "dog", "ran", "##s", "big", "red", "house", "is", "blue", "."]
HF_CONFIG = {
    "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(HF_VOCAB),
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "hidden_act": "gelu", "max_position_embeddings": 16,
    "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


def make_hf_weights(config, seed=0, prefix=""):
  """Random HF BertModel tensors, scaled so that activations are O(1) (GELU variants differ)."""
  rng = np.random.default_rng(seed)
  h, inner = config["hidden_size"], config["intermediate_size"]
  f32 = lambda a: a.astype(np.float32)

  def linear(name, n_out, n_in):
    return {f"{name}.weight": f32(rng.normal(0, 1.5 / np.sqrt(n_in), (n_out, n_in))),
            f"{name}.bias": f32(rng.normal(0, 0.5, (n_out,)))}

  def layer_norm(name):
    return {f"{name}.weight": f32(1 + rng.normal(0, 0.2, (h,))),
            f"{name}.bias": f32(rng.normal(0, 0.2, (h,)))}

  w = {
      "embeddings.word_embeddings.weight": f32(rng.normal(0, 1, (config["vocab_size"], h))),
      "embeddings.position_embeddings.weight":
          f32(rng.normal(0, 1, (config["max_position_embeddings"], h))),
      "embeddings.token_type_embeddings.weight":
          f32(rng.normal(0, 1, (config["type_vocab_size"], h))),
      **layer_norm("embeddings.LayerNorm"),
      **linear("pooler.dense", h, h),
  }
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    for part in ("query", "key", "value"):
      w.update(linear(f"{p}.attention.self.{part}", h, h))
    w.update(linear(f"{p}.attention.output.dense", h, h))
    w.update(layer_norm(f"{p}.attention.output.LayerNorm"))
    w.update(linear(f"{p}.intermediate.dense", inner, h))
    w.update(linear(f"{p}.output.dense", h, inner))
    w.update(layer_norm(f"{p}.output.LayerNorm"))
  return {prefix + k: v for k, v in w.items()}


def write_hf_dir(path, config=HF_CONFIG, weights=None, tokenizer_config=None):
  """An HF model directory as save_pretrained writes it (safetensors)."""
  from safetensors import numpy as safetensors_numpy
  os.makedirs(path, exist_ok=True)
  weights = make_hf_weights(config) if weights is None else weights
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(path, "vocab.txt"), "w") as f:
    f.write("\n".join(HF_VOCAB) + "\n")
  if tokenizer_config is not None:
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
      json.dump(tokenizer_config, f)
  safetensors_numpy.save_file(weights, os.path.join(path, "model.safetensors"))
  return str(path)
