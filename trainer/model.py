"""The classifier: a BERT encoder (TF-Hub, checkpoint directory or random) + pooling + head.

    dict(input_word_ids, input_mask, input_type_ids)  int32 [batch, seq]
      -> encoder -> pooled [batch, hidden] (cls: pooled_output; mean: masked mean of
         sequence_output) -> dropout -> Dense(num_outputs, float32)
      -> logits float32 [batch, num_outputs]   (1 for binary, C for multiclass / multilabel)

Documents read in windows (config.model.chunk_pooling; bertcore/windows.py) come as
[batch, windows, seq]: the encoder reads them as [batch * windows, seq] and WindowPooling
turns the windows' pooled vectors into one document's logits [batch, num_outputs].

The logits are float32 under mixed precision (the Dense layer has a float32 dtype policy),
so the loss and the exported probabilities are computed in float32. trainer.export wraps
exactly this model.
"""
import tensorflow as tf
import tf_keras

from bertcore import cli, names, schema, tokenization
from trainer import encoders



def encoder_vocab(encoder_config):
  """(vocab_path, lower_case) of the configured encoder, or None for a random one without vocab."""
  try:
    if encoder_config.kind == "hub":
      return tokenization.resolve_vocab(hub_handle=encoder_config.hub_handle)
    if encoder_config.kind == "checkpoint":
      return tokenization.resolve_vocab(encoder_dir=encoder_config.dir)
  except (OSError, IOError, tf.errors.OpError, ValueError) as e:
    where = encoder_config.hub_handle if encoder_config.kind == "hub" else encoder_config.dir
    raise ValueError(f"cannot load the {encoder_config.kind} encoder {where}: "
                     f"{cli.error_line(e)}") from None
  if encoder_config.vocab_file:
    return tokenization.resolve_vocab(vocab_file=encoder_config.vocab_file)
  return None


def check_encoder_fits_data(encoder_config, manifest):
  """Refuses an encoder whose vocabulary, lower-casing or length limit differ from the data's.

  Raises DataError before anything is built: token ids from another vocabulary would train
  without any error and silently give a useless model.
  Returns:
    the encoder's vocab.txt path (None for a random encoder without vocab_file).
  """
  vocab = encoder_vocab(encoder_config)
  source = {"hub": encoder_config.hub_handle, "checkpoint": encoder_config.dir,
            "random": encoder_config.vocab_file}[encoder_config.kind]
  if vocab is not None:
    vocab_path, lower_case = vocab
    tokens = tokenization.load_vocab(vocab_path)
    sha = tokenization.vocab_sha256(tokens)
    if sha != manifest.vocab_sha256:
      raise schema.DataError(
          f"vocabulary mismatch: the encoder {source} has vocab {vocab_path} "
          f"({len(tokens)} tokens, sha256 {sha[:12]}) but the data was tokenized with "
          f"sha256 {manifest.vocab_sha256[:12]} ({manifest.vocab_size} tokens); "
          "re-run preprocessing with the encoder's vocabulary")
    if manifest.lower_case is not None and bool(manifest.lower_case) != bool(lower_case):
      raise schema.DataError(
          f"lower-casing mismatch: the encoder {source} expects lower_case={lower_case} but "
          f"the data was tokenized with lower_case={manifest.lower_case}; re-run "
          "preprocessing with the encoder's setting")
  if encoder_config.kind == "checkpoint":
    bert_config = encoders.read_bert_config(encoder_config.dir)
    limit = bert_config.get("max_position_embeddings", 512)
    if manifest.max_seq_length > limit:
      raise schema.DataError(
          f"the data's max_seq_length {manifest.max_seq_length} exceeds the encoder's "
          f"max_position_embeddings {limit} ({encoder_config.dir}); re-run preprocessing with "
          f"--max_seq_length={limit} or less")
    if (manifest.vocab_size or 0) > bert_config["vocab_size"]:
      raise schema.DataError(f"the data's vocabulary ({manifest.vocab_size} tokens) is "
                             f"larger than the encoder's ({bert_config['vocab_size']})")
  if (encoder_config.kind == "random"
      and manifest.max_seq_length > encoder_config.max_position_embeddings):
    raise schema.DataError(
        f"the data's max_seq_length {manifest.max_seq_length} exceeds "
        f"encoder.max_position_embeddings {encoder_config.max_position_embeddings}; re-run "
        f"preprocessing with --max_seq_length={encoder_config.max_position_embeddings} or less, "
        f"or raise --config.encoder.max_position_embeddings")
  return vocab[0] if vocab else None


def encoder_positions(encoder_config):
  """The encoder's max_position_embeddings (None for a TF-Hub encoder: it does not say)."""
  if encoder_config.kind == "checkpoint":
    return encoders.read_bert_config(encoder_config.dir).get("max_position_embeddings", 512)
  if encoder_config.kind == "random":
    return encoder_config.max_position_embeddings
  return None


def build_encoder(encoder_config, vocab_size):
  """The encoder as a Keras layer/model: dict inputs -> dict(sequence_output, pooled_output)."""
  if encoder_config.kind == "hub":
    import tensorflow_hub as hub  # Only this source needs it.
    return hub.KerasLayer(encoder_config.hub_handle, trainable=True, name="encoder")
  if encoder_config.kind == "checkpoint":
    encoder = encoders.build_bert_encoder(encoders.read_bert_config(encoder_config.dir),
                                          dropout=encoder_config.dropout)
    encoders.load_encoder_weights(encoder, encoder_config.dir)
    return encoder
  return encoders.build_bert_encoder(random_bert_config(encoder_config, vocab_size),
                                     dropout=encoder_config.dropout)


def random_bert_config(encoder_config, vocab_size):
  """The bert_config dict of a kind=random encoder config."""
  return {
      "vocab_size": vocab_size,
      "hidden_size": encoder_config.hidden_size,
      "num_hidden_layers": encoder_config.num_layers,
      "num_attention_heads": encoder_config.num_heads,
      "intermediate_size": encoder_config.intermediate_size,
      "hidden_act": encoder_config.hidden_act,
      "max_position_embeddings": encoder_config.max_position_embeddings,
  }


class MaskedMeanPooling(tf_keras.layers.Layer):
  """Mean of the sequence output over real tokens: [batch, seq, hidden] -> [batch, hidden].

  Computed in float32 even under mixed precision (sums of 128 float16 values lose digits).
  """

  def call(self, sequence_output, mask):
    x = tf.cast(sequence_output, tf.float32)
    m = tf.cast(mask, tf.float32)[:, :, None]                       # [batch, seq, 1]
    return tf.reduce_sum(x * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


class WindowPooling(tf_keras.layers.Layer):
  """Windows' pooled vectors [batch * windows, hidden] -> one document's logits [batch, K].

  mode "mean" / "max": the head scores every window and the windows' logits are averaged /
  maxed; "attention": a learned linear score per window, softmaxed over the document's
  windows, weights the windows' vectors into one, which the head scores (its score starts at
  zero: a mean of the vectors). Padding windows (input_mask[:, w, 0] == 0) never count.
  Computed in float32 (the head is float32, as for single windows).
  """

  def __init__(self, mode, num_outputs, dropout, **kwargs):
    super().__init__(**kwargs)
    self.mode = mode
    self.dropout = tf_keras.layers.Dropout(dropout, name="head_dropout")
    self.logits = tf_keras.layers.Dense(
        num_outputs, dtype="float32", name="logits",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
    if mode == "attention":
      self.score = tf_keras.layers.Dense(1, dtype="float32", name="window_score",
                                         kernel_initializer="zeros")

  def call(self, pooled, input_mask, training=None):
    shape = tf.shape(input_mask)                                     # [batch, windows, len]
    h = tf.reshape(tf.cast(pooled, tf.float32), [shape[0], shape[1], pooled.shape[-1]])
    real = input_mask[:, :, 0] > 0                                   # [b, w]; h [b, w, hidden]
    if self.mode == "attention":
      score = tf.where(real, self.score(h)[:, :, 0], -1e9)
      weights = tf.nn.softmax(score, axis=-1)[:, :, None]            # [b, w, 1]
      return self.logits(self.dropout(tf.reduce_sum(weights * h, axis=1), training=training))
    logits = self.logits(self.dropout(h, training=training))         # [b, w, K]
    if self.mode == "max":
      return tf.reduce_max(tf.where(real[:, :, None], logits, -1e9), axis=1)
    m = tf.cast(real, tf.float32)[:, :, None]
    return tf.reduce_sum(logits * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


# Keras builds the functional model by calling each layer once; without this, autograph
# would convert every layer's call (the encoder's too) first: a second of each run's start-up
# on 2 cores, for code that branches only in Python on static facts.
@tf.autograph.experimental.do_not_convert
def build_classifier(config, manifest, encoder=None):
  """The classifier for a config and the data it will be trained on.

  Args:
    config: the experiment ConfigDict (encoder.*, model.*).
    manifest: the data's schema.Manifest (labels, vocab_size).
    encoder: an encoder built elsewhere, not yet called (a distillation student's,
      trainer/distill.py); None = the one config.encoder names.
  Returns:
    (classifier, encoder): classifier a tf_keras.Model dict(input_word_ids, input_mask,
    input_type_ids) int32 [batch, seq] -> logits float32 [batch, num_outputs]. Build it under
    strategy.scope() after the precision policy is set.
  """
  labels = manifest.labels
  head = config.model.head
  if head != "binary" and len(labels) < 2:
    raise schema.DataError(f"a {head} head needs at least 2 labels; the data has {labels}")
  windows = config.model.chunk_pooling
  # Documents read in windows: inputs [batch, windows, len], encoded as [batch * windows, len].
  shape = (None, None) if windows else (None,)
  inputs = {k: tf_keras.Input(shape=shape, dtype=tf.int32, name=k) for k in names.MODEL_INPUTS}
  flat = inputs
  if windows:
    flat = {k: tf.reshape(v, [-1, tf.shape(inputs[k])[2]]) for k, v in inputs.items()}
  if encoder is None:
    encoder = build_encoder(config.encoder, int(manifest.vocab_size or 30522))
  outputs = encoder(flat)
  encoders.use_matmul_attention(encoder)  # built now: its layers exist
  encoders.use_fused_dense(encoder)
  if config.model.pooling == "cls":
    pooled = outputs["pooled_output"]
  else:
    pooled = MaskedMeanPooling(name="mean_pooling")(outputs["sequence_output"],
                                                     flat["input_mask"])
  num_outputs = names.num_outputs(head, len(labels))
  if windows:
    logits = WindowPooling(windows, num_outputs, config.model.dropout, name="window_pooling")(
        pooled, inputs["input_mask"])
  else:
    x = tf_keras.layers.Dropout(config.model.dropout, name="head_dropout")(pooled)
    logits = tf_keras.layers.Dense(
        num_outputs, dtype="float32", name="logits",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))(x)
  return tf_keras.Model(inputs=inputs, outputs=logits, name="classifier"), encoder


def probabilities(logits, head):
  """float32 logits [batch, K] -> probabilities in trainer.evaluation's layout.

  binary [batch] P(positive); multiclass [batch, C] softmax; multilabel [batch, C] sigmoids.
  """
  if head == "binary":
    return tf.sigmoid(logits[:, 0])
  if head == "multiclass":
    return tf.nn.softmax(logits, axis=-1)
  return tf.sigmoid(logits)


def per_example_loss(labels, logits, head, pos_weight=1.0, class_weights=None):
  """float32 loss per example [batch].

  binary: sigmoid cross-entropy with positive targets weighted by pos_weight (labels [b, 1]);
  multiclass: softmax cross-entropy times class_weights[label] (labels int [b]);
  multilabel: sigmoid cross-entropy averaged over labels, positives weighted (labels [b, C]).
  """
  logits = tf.cast(logits, tf.float32)
  if head == "multiclass":
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if class_weights is not None:
      loss *= tf.gather(tf.constant(class_weights, tf.float32), labels)
    return loss
  labels = tf.cast(labels, tf.float32)
  loss = tf.nn.weighted_cross_entropy_with_logits(labels=labels, logits=logits,
                                                  pos_weight=pos_weight)
  return tf.reduce_mean(loss, axis=-1)
