"""Model Garden BERT encoders from a bert_config.json, the encoder-directory layout, and the
encoders' computation in the forms CPUs run fastest (MatmulAttention, FusedDense).

An encoder directory (what `python -m trainer.convert` writes; Google's official TF2 BERT
checkpoints have the same layout) holds:
  bert_config.json   vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
                     intermediate_size, hidden_act, max_position_embeddings, type_vocab_size,
                     hidden_dropout_prob, attention_probs_dropout_prob, initializer_range
                     and optionally do_lower_case (default true)
  vocab.txt
  bert_model.ckpt.*  a tf.train.Checkpoint(encoder=BertEncoderV2)
"""
import math
import posixpath

import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from bertcore import files
from bertcore import private_apis
from bertcore.names import BERT_CONFIG_FILE as CONFIG_FILE
from bertcore.names import CHECKPOINT_PREFIX, VOCAB_FILE  # noqa: F401 (the directory layout)

# Google's bert_config "gelu" is the tanh approximation (google-research/bert, Model Garden);
# Hugging Face's "gelu" is exact (erf), which the converter writes as "gelu_exact".
ACTIVATIONS = {
    "gelu": lambda x: tf_keras.activations.gelu(x, approximate=True),
    "gelu_exact": tf_keras.activations.gelu,  # approximate=False by default
    "relu": tf_keras.activations.relu,
}


def read_bert_config(encoder_dir):
  return files.read_json(posixpath.join(encoder_dir, CONFIG_FILE))


def build_bert_encoder(bert_config, dropout=None):
  """BertEncoderV2 for a bert_config dict.

  Inputs: dict(input_word_ids, input_mask, input_type_ids), each int32 [batch, seq].
  Outputs: dict with sequence_output [batch, seq, hidden] and pooled_output [batch, hidden].
  """
  act = bert_config.get("hidden_act", "gelu")
  if act not in ACTIVATIONS:
    raise ValueError(f"unsupported hidden_act {act!r}; expected one of {sorted(ACTIVATIONS)}")
  output_dropout = bert_config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout
  attention_dropout = (bert_config.get("attention_probs_dropout_prob", 0.1)
                       if dropout is None else dropout)
  return networks.BertEncoderV2(
      vocab_size=bert_config["vocab_size"],
      hidden_size=bert_config["hidden_size"],
      num_layers=bert_config["num_hidden_layers"],
      num_attention_heads=bert_config["num_attention_heads"],
      inner_dim=bert_config["intermediate_size"],
      inner_activation=ACTIVATIONS[act],
      max_sequence_length=bert_config.get("max_position_embeddings", 512),
      type_vocab_size=bert_config.get("type_vocab_size", 2),
      output_dropout=output_dropout,
      attention_dropout=attention_dropout,
      initializer=tf_keras.initializers.TruncatedNormal(
          stddev=bert_config.get("initializer_range", 0.02)),
  )


def load_encoder_weights(encoder, encoder_dir):
  """Restores a tf.train.Checkpoint(encoder=...) from an encoder directory.

  The encoder is called once first so that all its variables exist; then every checkpointed
  value must be used and every variable restored (a 5-layer model cannot load a 6-layer file).
  """
  dummy = tf.zeros([1, 2], tf.int32)
  encoder(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy))
  path = posixpath.join(encoder_dir, CHECKPOINT_PREFIX)
  tf.train.Checkpoint(encoder=encoder).read(path).assert_consumed()


# What Model Garden's attention computes with einsums, and MatmulAttention as batched matmuls:
# on CPUs TensorFlow runs these einsums with layout changes around a batched matmul, slower than
# the transposes + matmuls below (bench_step and bench_matmul in docs/benchmarks.md).
ATTENTION_EQUATIONS = ("aecd,abcd->acbe", "acbe,aecd->abcd")  # scores, combine; [b, s, heads, h]


class MatmulAttention(tf_keras.layers.MultiHeadAttention):
  """MultiHeadAttention with its two einsums as batched matmuls over [batch, heads].

  Overrides `_compute_attention` (the method tf_keras documents for that): the same scaling,
  masked softmax and attention dropout, the same outputs to float rounding.
  """

  def _compute_attention(self, query, key, value, attention_mask=None, training=None):
    key_dim, masked_softmax, dropout, _ = private_apis.attention_internals(self)
    query = tf.multiply(query, 1.0 / math.sqrt(float(key_dim)))
    q, k, v = (tf.transpose(t, [0, 2, 1, 3]) for t in (query, key, value))  # [b, heads, s, h]
    scores = masked_softmax(tf.matmul(q, k, transpose_b=True), attention_mask)
    context = tf.matmul(dropout(scores, training=training), v)
    return tf.transpose(context, [0, 2, 1, 3]), scores


def use_matmul_attention(encoder, enabled=True):
  """Sets a built BertEncoderV2's attention layers to MatmulAttention (enabled) or back to
  Model Garden's tf_keras MultiHeadAttention.

  Only the layers' computation changes: their variables, names and checkpoints are untouched,
  so a checkpoint written either way restores into the other. Returns how many layers it set
  (0 for an encoder that is not a BertEncoderV2, such as a TF-Hub layer).
  """
  if not isinstance(encoder, networks.BertEncoderV2):
    return 0
  layers = [layer for layer in private_apis.attention_layers(encoder)
            if type(layer) in (tf_keras.layers.MultiHeadAttention, MatmulAttention)
            and private_apis.attention_internals(layer).equations == ATTENTION_EQUATIONS]
  for layer in layers:
    layer.__class__ = MatmulAttention if enabled else tf_keras.layers.MultiHeadAttention
  return len(layers)


# The EinsumDense equations of a BertEncoderV2 block (inputs [b, s, ...]): the feed-forward
# layers, the query / key / value projections to [b, s, heads, h], the attention output.
# Each contracts the input's trailing axes with the kernel's leading ones.
DENSE_EQUATIONS = ("abc,cd->abd", "abc,cde->abde", "abcd,cde->abe")


class FusedDense(tf_keras.layers.EinsumDense):
  """An EinsumDense of DENSE_EQUATIONS computed as one 2-D matmul, its bias and its activation:
  [b*s, in] x [in, out] -> bias_add -> activation -> reshaped to the einsum's output.

  In that form TensorFlow's graph optimizer fuses the three into one oneDNN kernel (_FusedMatMul
  with BiasAdd and GELU); the einsum runs as a separate product, bias add and the GELU's five
  elementwise ops. The same variables and outputs as the einsum (to float rounding).
  """

  def call(self, inputs):
    contracted = inputs.shape.rank - 2            # the input's axes after [b, s]
    out_dims = self.kernel.shape[contracted:]
    size_in = math.prod(self.kernel.shape[:contracted])
    y = tf.matmul(tf.reshape(inputs, [-1, size_in]), tf.reshape(self.kernel, [size_in, -1]))
    if self.bias is not None:
      y = tf.nn.bias_add(y, tf.reshape(self.bias, [-1]))
    if self.activation is not None:
      y = self.activation(y)
    y = tf.reshape(y, tf.concat([tf.shape(inputs)[:2], out_dims], axis=0))
    y.set_shape(inputs.shape[:2].concatenate(out_dims))
    return y


def use_fused_dense(encoder, enabled=True):
  """Sets a built BertEncoderV2's dense layers (attention projections, feed-forward) to
  FusedDense and moves each block's feed-forward activation into its intermediate dense layer
  (enabled), or back to Model Garden's EinsumDense and activation layer.

  As use_matmul_attention: variables, names and checkpoints are untouched. Returns how many
  layers it set (0 for an encoder that is not a BertEncoderV2).
  """
  if not isinstance(encoder, networks.BertEncoderV2):
    return 0
  dense = []
  for ffn, attention in zip(private_apis.feedforward_layers(encoder),
                            private_apis.attention_layers(encoder)):
    if enabled and ffn.intermediate.activation is tf_keras.activations.linear:
      ffn.intermediate.activation, ffn.activation.activation = (ffn.activation.activation,
                                                                tf_keras.activations.linear)
    elif not enabled and ffn.activation.activation is tf_keras.activations.linear:
      ffn.intermediate.activation, ffn.activation.activation = (tf_keras.activations.linear,
                                                                ffn.intermediate.activation)
    dense += [ffn.intermediate, ffn.output] + private_apis.attention_dense_layers(attention)
  dense = [layer for layer in dense if type(layer) in (tf_keras.layers.EinsumDense, FusedDense)
           and layer.equation in DENSE_EQUATIONS]
  for layer in dense:
    layer.__class__ = FusedDense if enabled else tf_keras.layers.EinsumDense
  return len(dense)
