"""Sequence packing, for measuring it (issue 19): several short examples share one row of a
fixed length, each attending only to its own tokens (a block-diagonal attention mask), at its
own positions (0, 1, ... from its first token), mean-pooled and classified on its own.

bench_step times the trainer's step on packed rows against the same examples padded to each
batch's longest row (`--packed`). Packing is not a trainer option: it is kept only if it
measures faster (benchmarks/results/step.md, notes/step.md).

  rows = pack(lengths, row_length, max_per_row)          first-fit decreasing
  batches = packed_batches(examples, row_length, rows_per_batch, max_per_row)
  loss_fn = packed_loss(classifier, encoder)             the step's loss on one packed batch

A packed batch has static shapes (rows_per_batch x row_length tokens, rows_per_batch x
max_per_row example slots, the unused slots weighted 0), as a TPU would need.
"""
import numpy as np
import tensorflow as tf

from bertcore import private_apis
from trainer import model as model_lib

SEGMENT_IDS = "segment_ids"      # [rows, row_length]: 1, 2, ... per example in its row; 0 = padding
POSITIONS = "positions"          # [rows, row_length]: each token's position in its own example
SLOT_WEIGHTS = "slot_weights"    # [rows * max_per_row]: 1.0 for a slot holding an example


def pack(lengths, row_length, max_per_row):
  """First-fit decreasing: lists of example indices, each list one row of <= row_length tokens
  and <= max_per_row examples. Every example is placed exactly once."""
  if max(lengths) > row_length:
    raise ValueError(f"an example of {max(lengths)} tokens does not fit a row of {row_length}")
  rows, free = [], []
  for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
    for r, room in enumerate(free):
      if lengths[i] <= room and len(rows[r]) < max_per_row:
        rows[r].append(i)
        free[r] -= lengths[i]
        break
    else:
      rows.append([i])
      free.append(row_length - lengths[i])
  return rows


def packed_batches(examples, row_length, rows_per_batch, max_per_row):
  """[(features, labels)] of packed batches holding every example once.

  examples: [(token ids 1-D int array, label float)]. features: input_word_ids,
  input_type_ids, SEGMENT_IDS, POSITIONS int32 [rows_per_batch, row_length] and SLOT_WEIGHTS;
  labels float32 [rows_per_batch * max_per_row, 1] (0 in unused slots). The last batch's
  missing rows are all padding.
  """
  rows = pack([len(ids) for ids, _ in examples], row_length, max_per_row)
  out = []
  for start in range(0, len(rows), rows_per_batch):
    shape = (rows_per_batch, row_length)
    ids, segments, positions = (np.zeros(shape, np.int32) for _ in range(3))
    labels = np.zeros((rows_per_batch * max_per_row, 1), np.float32)
    weights = np.zeros(rows_per_batch * max_per_row, np.float32)
    for r, row in enumerate(rows[start:start + rows_per_batch]):
      at = 0
      for s, i in enumerate(row):
        tokens, label = examples[i]
        ids[r, at:at + len(tokens)] = tokens
        segments[r, at:at + len(tokens)] = s + 1
        positions[r, at:at + len(tokens)] = np.arange(len(tokens))
        labels[r * max_per_row + s, 0] = label
        weights[r * max_per_row + s] = 1.0
        at += len(tokens)
    features = {"input_word_ids": ids, "input_type_ids": np.zeros(shape, np.int32),
                SEGMENT_IDS: segments, POSITIONS: positions, SLOT_WEIGHTS: weights}
    out.append(({k: tf.constant(v) for k, v in features.items()}, tf.constant(labels)))
  return out


def packed_logits(classifier, encoder, features, training):
  """float32 logits [rows * max_per_row, outputs] of a packed batch (unused slots: the head of
  a zero vector). The classifier must mean-pool (model.pooling="mean"); its head layers and
  the encoder's layers are used as they are, so the weights are the classifier's."""
  layers = private_apis.embedding_layers(encoder)
  segments = features[SEGMENT_IDS]
  word = layers.word(features["input_word_ids"])
  x = (word + tf.cast(tf.gather(layers.position_table, features[POSITIONS]), word.dtype)
       + layers.type(features["input_type_ids"]))
  x = layers.dropout(layers.norm(x), training=training)
  same = tf.equal(segments[:, :, None], segments[:, None, :])
  mask = tf.cast(tf.logical_and(same, segments[:, None, :] > 0), x.dtype)   # [rows, L, L]
  for block in encoder.transformer_layers:
    x = block([x, mask], training=training)
  slots = tf.size(features[SLOT_WEIGHTS])
  per_row = slots // tf.shape(segments)[0]
  rows = tf.range(tf.shape(segments)[0])[:, None]
  index = tf.where(segments > 0, rows * per_row + segments - 1, slots)   # padding: one more slot
  hidden = tf.shape(x)[-1]
  flat = tf.reshape(tf.cast(x, tf.float32), [-1, hidden])
  index = tf.reshape(index, [-1])
  sums = tf.math.unsorted_segment_sum(flat, index, slots + 1)[:slots]
  counts = tf.math.unsorted_segment_sum(tf.ones_like(index, tf.float32), index, slots + 1)[:slots]
  pooled = sums / tf.maximum(counts, 1.0)[:, None]
  pooled = classifier.get_layer("head_dropout")(pooled, training=training)
  return classifier.get_layer("logits")(pooled)


def packed_loss(classifier, encoder):
  """loss_fn(features, labels) -> the mean binary loss over a packed batch's examples."""
  names = [layer.name for layer in classifier.layers]
  if "mean_pooling" not in names:
    raise ValueError("packing needs a mean-pooling classifier (model.pooling='mean')")

  def loss_fn(features, labels):
    logits = packed_logits(classifier, encoder, features, training=True)
    weights = features[SLOT_WEIGHTS]
    losses = model_lib.per_example_loss(labels, logits, "binary")
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
  return loss_fn
