"""trainer.input_pipeline: bucket shapes, exact padding, labels, sharding, resume skipping."""
import os

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from bertcore import schema
from trainer import config as config_lib
from trainer import input_pipeline as ip


def _rows_by_id(rows):
  return {r[0]: r for r in rows}


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("binary"))
  rows = fx.example_rows(300, seed=5, max_len=40)
  manifest = fx.write_data_dir(d, {"train": rows, "validation": rows[:70], "test": []},
                               num_shards=3, max_seq_length=64)
  return d, manifest, rows


def _config(**train):
  """The default config with config.train fields replaced (padding bucket unless given:
  trainer.plan resolves the default "auto" before a run builds its pipelines)."""
  config = config_lib.default_config()
  config.train.padding = "bucket"
  for name, value in train.items():
    config.train[name] = value
  return config


def _train(data_dir, manifest, batch, input_context=None, epoch=0, skip_steps=0, **train):
  config = _config(global_batch_size=batch, **train)
  return ip.train_batches(ip.source(data_dir, "train", manifest, "binary"), config.train,
                          config.data, input_context=input_context, epoch=epoch,
                          skip_steps=skip_steps)


def _eval(data_dir, manifest, batch, head="binary", input_context=None, positive_label="",
          **train):
  config = _config(**train)
  return ip.eval_batches(ip.source(data_dir, "validation", manifest, head, positive_label),
                         batch, config.train, config.data, input_context=input_context)


def _take(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def test_training_batches_have_only_bucket_shapes_and_exact_padding(binary_dir):
  data_dir, manifest, rows = binary_dir
  by_tokens = {tuple(r[1]): r for r in rows}
  ds = _train(data_dir, manifest, 8, bucket_boundaries=(16, 32))
  assert ds.element_spec["input_word_ids"].shape.as_list() == [8, None]
  seen_lengths = set()
  for batch in _take(ds, 60):
    length = batch["input_word_ids"].shape[1]
    seen_lengths.add(length)
    assert batch["labels"].shape == (8, 1) and batch["labels"].dtype == np.float32
    for ids, mask, types, label in zip(batch["input_word_ids"], batch["input_mask"],
                                       batch["input_type_ids"], batch["labels"]):
      n = int(mask.sum())
      assert mask[:n].all() and not mask[n:].any()      # ones, then zeros
      assert not ids[n:].any() and not types[n:].any()  # padded with 0
      row = by_tokens[tuple(ids[:n])]                    # the exact record, unpadded
      assert label[0] == row[3][0]
    # the smallest padded length that fits the batch's longest row
    longest = int(batch["input_mask"].sum(axis=1).max())
    assert length == min(b for b in (16, 32, 64) if b >= longest)
  assert seen_lengths <= {16, 32, 64} and len(seen_lengths) >= 2


def test_longest_padding_pads_each_batch_to_its_longest_row(binary_dir):
  data_dir, manifest, rows = binary_dir
  ds = _train(data_dir, manifest, 8, padding="longest")
  lengths = set()
  for batch in _take(ds, 30):
    longest = int(batch["input_mask"].sum(axis=1).max())
    assert batch["input_word_ids"].shape == (8, longest)
    lengths.add(longest)
  assert len(lengths) > 3          # rows of up to 40 tokens: many shapes, none padded further
  (batch,) = _take(_eval(data_dir, manifest, 70, padding="longest"), 1)
  assert batch["input_word_ids"].shape[1] == int(batch["input_mask"].sum(axis=1).max())


def test_unresolved_auto_padding_is_refused_in_one_line(binary_dir):
  data_dir, manifest, _ = binary_dir
  with pytest.raises(ValueError, match="padding='auto' must be resolved") as raised:
    _train(data_dir, manifest, 8, padding="auto")
  assert "\n" not in str(raised.value)


def test_fixed_padding_pads_everything_to_max_seq_length(binary_dir):
  data_dir, manifest, _ = binary_dir
  ds = _train(data_dir, manifest, 8, padding="fixed")
  assert {b["input_word_ids"].shape for b in _take(ds, 10)} == {(8, 64)}


def test_multiclass_and_multilabel_labels(tmp_path):
  rows = fx.example_rows(40, seed=3, num_labels=3)
  manifest = fx.write_data_dir(str(tmp_path / "mc"), {"train": rows, "validation": rows},
                               labels=("a", "b", "c"), num_shards=1)
  ds = _eval(str(tmp_path / "mc"), manifest, 40, head="multiclass")
  (batch,) = _take(ds, 1)
  assert batch["labels"].dtype == np.int32
  assert sorted(batch["labels"].tolist()) == sorted(r[3][0] for r in rows)

  rows = fx.example_rows(40, seed=4, num_labels=3, multilabel=True)
  manifest = fx.write_data_dir(str(tmp_path / "ml"), {"train": rows, "validation": rows},
                               labels=("a", "b", "c"), num_shards=1, multi_label=True)
  ds = _eval(str(tmp_path / "ml"), manifest, 40, head="multilabel")
  (batch,) = _take(ds, 1)
  expected = {tuple(r[1]): [float(k in r[3]) for k in range(3)] for r in rows}
  for ids, mask, hot in zip(batch["input_word_ids"], batch["input_mask"], batch["labels"]):
    assert hot.tolist() == expected[tuple(ids[:mask.sum()])]
  assert any(not any(v) for v in expected.values())  # rows without labels are all-zero


@pytest.mark.parametrize("head,unlabeled,label_ids,expected", [
    ("binary", False, [[2], [0]], [[1.0], [0.0]]),
    ("binary", True, [[2], [], [0]], [[1.0], [-1.0], [0.0]]),
    ("multiclass", False, [[2], [1]], [2, 1]),
    ("multiclass", True, [[], [1]], [-1, 1]),
])
def test_single_label_targets_and_minus_one_for_a_missing_label_where_allowed(
    head, unlabeled, label_ids, expected):
  got = ip._labels(tf.ragged.constant(label_ids, dtype=tf.int32), head, 3, 2, unlabeled)
  assert got.numpy().tolist() == expected


@pytest.mark.parametrize("unlabeled,label_ids,message", [
    (False, [[1], []], "every example needs exactly one label id for a binary head"),
    (False, [[1, 2]], "every example needs exactly one label id for a binary head"),
    (True, [[], [1, 2]], "every labelled example needs exactly one label id for a binary head"),
])
def test_a_single_label_head_refuses_rows_without_or_with_several_label_ids(
    unlabeled, label_ids, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    ip._labels(tf.ragged.constant(label_ids, dtype=tf.int32), "binary", 3, 2, unlabeled)


def test_binary_one_vs_rest_from_multiclass_data(tmp_path):
  rows = fx.example_rows(30, seed=6, num_labels=3)
  manifest = fx.write_data_dir(str(tmp_path), {"validation": rows}, labels=("neg", "neu", "pos"),
                               num_shards=1)
  ds = _eval(str(tmp_path), manifest, 30, positive_label="pos")
  (batch,) = _take(ds, 1)
  expected = {tuple(r[1]): float(r[3][0] == 2) for r in rows}
  got = {tuple(i[:m.sum()]): l[0] for i, m, l in zip(batch["input_word_ids"],
                                                    batch["input_mask"], batch["labels"])}
  assert got == expected
  with pytest.raises(schema.DataError, match="positive_label"):
    ip.label_index(["neg", "neu", "pos"], "")


def test_eval_pipelines_get_disjoint_shards_and_equal_full_batches(binary_dir):
  data_dir, manifest, rows = binary_dir
  shards = ip.split_shards(data_dir, "validation", manifest)
  seen, batch_counts = [], []
  for pipeline in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                     num_replicas_in_sync=2)
    files = ip.assign_shards(shards, 2, pipeline)[0]
    batches = _take(_eval(data_dir, manifest, 16, input_context=ctx), 100)
    batch_counts.append(len(batches))
    for b in batches:
      assert b["input_word_ids"].shape[0] == 8
      for ids, mask, w in zip(b["input_word_ids"], b["input_mask"], b["weights"]):
        if w:
          seen.append(tuple(ids[:mask.sum()]))
    assert files and set(files).isdisjoint(ip.assign_shards(shards, 2, 1 - pipeline)[0])
  assert batch_counts[0] == batch_counts[1] == ip.eval_steps(shards, 2, 16, 2)
  assert sorted(seen) == sorted(tuple(r[1]) for r in rows[:70])  # every row exactly once


def test_fewer_shards_than_pipelines_still_reads_every_row_once(tmp_path):
  rows = fx.example_rows(21, seed=8)
  manifest = fx.write_data_dir(str(tmp_path), {"validation": rows}, num_shards=1)
  seen = []
  for pipeline in range(3):
    ctx = tf.distribute.InputContext(3, pipeline, 3)
    for b in _take(_eval(str(tmp_path), manifest, 3, input_context=ctx), 100):
      seen += [tuple(i[:m.sum()]) for i, m, w in zip(b["input_word_ids"], b["input_mask"],
                                                     b["weights"]) if w]
  assert sorted(seen) == sorted(tuple(r[1]) for r in rows)


def test_skip_steps_resumes_the_same_batch_sequence(binary_dir):
  data_dir, manifest, _ = binary_dir
  def batches(epoch, skip):
    ds = _train(data_dir, manifest, 8, bucket_boundaries=(16, 32), seed=3, epoch=epoch,
                skip_steps=skip)
    return [b["input_word_ids"].tolist() for b in _take(ds, 12)]
  full = batches(epoch=1, skip=0)
  assert batches(epoch=1, skip=5)[:7] == full[5:]
  assert batches(epoch=2, skip=0) != full          # each epoch has its own order


def test_verify_shards_names_a_truncated_file_or_skips_it(tmp_path):
  rows = fx.example_rows(50, seed=9)
  manifest = fx.write_data_dir(str(tmp_path), {"train": rows}, num_shards=2)
  shards = ip.split_shards(str(tmp_path), "train", manifest)
  bad = shards[1][0]
  with open(bad, "rb") as f:
    data = f.read()
  with open(bad, "wb") as f:
    f.write(data[: len(data) // 2 + 3])
  with pytest.raises(schema.DataError, match=os.path.basename(bad)):
    ip.verify_shards(shards)
  good, skipped = ip.verify_shards(shards, on_corrupt="skip")
  assert [p for p, _ in good] == [shards[0][0]] and skipped[0][0] == bad
  assert ip.find_corrupt_shard(shards)[0] == bad


def test_the_replicas_of_one_step_get_batches_of_one_shape(binary_dir):
  data_dir, manifest, _ = binary_dir
  ctx = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                   num_replicas_in_sync=2)
  ds = _train(data_dir, manifest, 16, input_context=ctx, bucket_boundaries=(16, 32))
  shapes = [b["input_word_ids"].shape for b in _take(ds, 40)]
  assert all(s[0] == 8 for s in shapes)
  assert all(shapes[i] == shapes[i + 1] for i in range(0, 40, 2))   # pairs = steps
  assert len(set(shapes)) >= 2
  batches = _take(_eval(data_dir, manifest, 16, input_context=ctx), 100)
  assert len(batches) % 2 == 0 and sum(b["weights"].sum() for b in batches) == 70
  assert all(batches[i]["input_word_ids"].shape == batches[i + 1]["input_word_ids"].shape
             for i in range(0, len(batches), 2))
