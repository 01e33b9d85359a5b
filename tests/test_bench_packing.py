"""benchmarks/packing.py: packed rows compute what each example computes alone (so a timing of
the packed step times the right computation), and the packer places every example once."""
import numpy as np
import pytest

import bertcore  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from benchmarks import packing
from bertcore import schema
from trainer import config as config_lib, model as model_lib

LENGTHS = (5, 3, 9, 2, 7, 4, 6)


def _classifier(pooling="mean"):
  config = config_lib.default_config()
  config.encoder.update(kind="random", hidden_size=8, num_layers=2, num_heads=2,
                        intermediate_size=16, max_position_embeddings=16, dropout=0.0)
  config.model.update(pooling=pooling, dropout=0.0)
  manifest = schema.Manifest(labels=["rest", "positive"], vocab_sha256="", max_seq_length=16,
                             splits={}, vocab_size=40)
  tf_keras.utils.set_random_seed(4)
  return model_lib.build_classifier(config, manifest)


def _examples():
  rng = np.random.RandomState(0)
  return [(rng.randint(1, 40, n).astype(np.int32), float(i % 2)) for i, n in enumerate(LENGTHS)]


def test_pack_places_every_example_once_within_the_row_limits():
  rows = packing.pack(list(LENGTHS), row_length=10, max_per_row=2)
  assert sorted(i for row in rows for i in row) == list(range(len(LENGTHS)))
  assert all(sum(LENGTHS[i] for i in row) <= 10 and len(row) <= 2 for row in rows)
  assert len(rows) == 4      # first-fit decreasing: 9 | 7+3 | 6+4 | 5+2
  with pytest.raises(ValueError, match="does not fit a row of 8"):
    packing.pack(list(LENGTHS), row_length=8, max_per_row=2)


def test_packed_logits_and_loss_equal_each_example_run_alone():
  classifier, encoder = _classifier()
  examples = _examples()
  batches = packing.packed_batches(examples, row_length=12, rows_per_batch=2, max_per_row=3)
  assert len(batches) == 2 and {int(f["input_word_ids"].shape[0]) for f, _ in batches} == {2}
  got, labels = {}, {}
  for features, slot_labels in batches:
    logits = packing.packed_logits(classifier, encoder, features, training=False).numpy()
    for slot in np.flatnonzero(features[packing.SLOT_WEIGHTS].numpy()):
      got[round(float(logits[slot, 0]), 5)] = float(slot_labels[slot, 0])
  alone = []
  for ids, label in examples:
    x = tf.constant(ids[None])
    inputs = dict(input_word_ids=x, input_mask=tf.ones_like(x), input_type_ids=tf.zeros_like(x))
    alone.append(float(classifier(inputs, training=False)[0, 0]))
  assert len(got) == len(examples)
  np.testing.assert_allclose(sorted(got), sorted(alone), atol=2e-5)
  # The loss over a batch is the mean over its real slots only.
  features, slot_labels = batches[0]
  logits = packing.packed_logits(classifier, encoder, features, training=False)
  weights = features[packing.SLOT_WEIGHTS].numpy()
  each = model_lib.per_example_loss(slot_labels, logits, "binary").numpy()
  loss = packing.packed_loss(classifier, encoder)(features, slot_labels)
  np.testing.assert_allclose(float(loss), each[weights > 0].mean(), rtol=1e-5)


def test_the_packed_tokens_do_not_see_their_row_neighbours():
  classifier, encoder = _classifier()
  examples = _examples()[:2]
  batch, = packing.packed_batches(examples, row_length=12, rows_per_batch=1, max_per_row=2)
  before = packing.packed_logits(classifier, encoder, batch[0], training=False).numpy()
  changed = [(examples[0][0], examples[0][1]), (examples[1][0] % 39 + 1, examples[1][1])]
  after_batch, = packing.packed_batches(changed, row_length=12, rows_per_batch=1, max_per_row=2)
  after = packing.packed_logits(classifier, encoder, after_batch[0], training=False).numpy()
  # First-fit decreasing puts the longer example 0 in slot 0, example 1 in slot 1.
  np.testing.assert_allclose(after[0], before[0], atol=1e-6)
  assert abs(after[1, 0] - before[1, 0]) > 1e-6


def test_packing_refuses_a_classifier_that_does_not_mean_pool():
  classifier, encoder = _classifier(pooling="cls")
  with pytest.raises(ValueError, match="mean-pooling"):
    packing.packed_loss(classifier, encoder)


def test_bench_step_packs_the_padded_sets_examples_into_as_many_steps():
  from benchmarks import bench_step
  rng = np.random.RandomState(1)
  padded = []
  for lengths in ([5, 2, 7], [3, 6, 1]):
    ids = np.zeros([3, 7], np.int32)
    for r, n in enumerate(lengths):
      ids[r, :n] = rng.randint(1, 40, n)
    features = {"input_word_ids": tf.constant(ids), "input_mask": tf.constant((ids > 0) * 1),
                "input_type_ids": tf.zeros_like(ids)}
    padded.append((features, tf.constant([[1.0], [0.0], [1.0]])))
  packed, = bench_step.packed_sets(padded, [8]).values()
  assert len(packed) == len(padded)
  examples, real, total, _, shapes = bench_step.batch_counts(packed, 8, 1, 16)
  assert (examples, real, shapes) == (6, 24, 1)
  assert total == len(packed) * int(packed[0][0]["input_word_ids"].shape[0]) * 8
  assert bench_step.batch_counts(padded, 8, 1, 16)[:3] == (6, 24, 42)
  labels = sorted(float(l) for f, ls in packed
                  for l, w in zip(ls.numpy()[:, 0], f[packing.SLOT_WEIGHTS].numpy()) if w)
  assert labels == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_bench_step_refuses_rows_shorter_than_the_longest_example_in_one_line():
  from benchmarks import bench_step
  ids = tf.constant([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]], tf.int32)
  features = {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32),
              "input_type_ids": tf.zeros_like(ids)}
  with pytest.raises(SystemExit, match="--packed=3 is shorter than the longest example of "
                                       r"these batches \(4 tokens\); use lengths >= 4"):
    bench_step.packed_sets([(features, tf.constant([[1.0], [0.0]]))], [8, 3])
