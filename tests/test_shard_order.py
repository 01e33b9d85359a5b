"""A CSV in any order gives the same training stream statistics.

The case: a CSV sorted by label whose ids follow the file (row numbers, database keys). Shards
once sorted by id kept that order, and a bounded shuffle buffer fed training one label after
another. Now shards are ordered by a salted hash of the id (preprocess.rows.order_key), the
trainer's default shuffle covers the whole split (trainer.plan.resolve_shuffle), and shards
written the old way get a warning (trainer.plan.check_label_order).
"""
import math
import os
import random

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import pytest
import tensorflow as tf

from bertcore import schema
from preprocess import run as run_lib
from trainer import input_pipeline as ip
from trainer import plan as plan_lib
from trainer import strategy as strategy_lib

WORDS = ["how", "are", "you", "hello", "world", "what", "is", "this", "the", "cat", "sat", "on",
         "mat", "a", "dog"]
NEGATIVE, POSITIVE = 1400, 600   # file order: every negative row, then every positive one
BATCH = 16


def _write_csv(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    f.write("qid,question_text,target\n" + "".join(f"{i},{t},{y}\n" for i, t, y in rows))


@pytest.fixture(scope="module")
def sorted_and_shuffled(tmp_path_factory, tiny_vocab_file):
  """The label-sorted CSV (ids t000000, ... in file order) and the same rows shuffled, each
  preprocessed into one shard per split."""
  base = tmp_path_factory.mktemp("order")
  rng = random.Random(7)
  rows = [(f"t{i:06d}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))),
           int(i >= NEGATIVE)) for i in range(NEGATIVE + POSITIVE)]
  shuffled = rows[:]
  rng.shuffle(shuffled)
  dirs = []
  for name, content in (("sorted", rows), ("shuffled", shuffled)):
    _write_csv(base / f"{name}.csv", content)
    out = str(base / name)
    run_lib.run([f"--input={base / name}.csv", f"--output_dir={out}",
                 f"--vocab_file={tiny_vocab_file}", "--labels=0,1", "--max_seq_length=16",
                 "--num_shards=1"])
    tf.io.gfile.copy(tiny_vocab_file, os.path.join(out, "vocab.txt"))  # for tiny_config
    dirs.append(out)
  return dirs


def _shard_bytes(data_dir):
  return {f"{split}/{name}": open(os.path.join(data_dir, split, name), "rb").read()
          for split in schema.SPLITS for name in os.listdir(os.path.join(data_dir, split))}


def _plan(data_dir, model_dir, **overrides):
  config = fx.tiny_config(data_dir, **{"model.positive_label": "1", **overrides})
  plan = plan_lib.plan_run(config, data_dir, model_dir, strategy_lib.build_strategy("one_device"))
  return plan_lib.resolved_config(config, plan), plan


def _first_tenth_positive_share(config, plan):
  """The positive share of the labels in the first tenth of epoch 0's batches."""
  ds = ip.train_batches(plan.source("train", config.model), config.train, config.data)
  steps = math.ceil(plan.steps_per_epoch / 10)
  labels = tf.concat([b["labels"] for b in ds.take(steps)], 0)
  return float(tf.reduce_mean(labels)), int(tf.size(labels))


def _within_sampling_error(share, split_share, n):
  return abs(share - split_share) <= 4 * math.sqrt(split_share * (1 - split_share) / n)


def test_shuffled_rows_give_byte_identical_shards(sorted_and_shuffled):
  sorted_dir, shuffled_dir = sorted_and_shuffled
  assert _shard_bytes(sorted_dir) == _shard_bytes(shuffled_dir)
  assert len(_shard_bytes(sorted_dir)) == 3


def test_a_label_sorted_csv_gives_shards_in_no_label_order(sorted_and_shuffled):
  sorted_dir, _ = sorted_and_shuffled
  shard, rows = ip.split_shards(sorted_dir, "train", schema.read_manifest(sorted_dir))[0]
  assert rows > 1500
  first, last, distance = ip.label_order(shard)
  assert distance < 0.15, (first, last)          # sorted by id, it would be about 1


@pytest.mark.parametrize("buffer", [0, 64])      # the default, and a buffer far below the split
def test_the_first_tenth_of_an_epoch_has_the_split_label_mix(sorted_and_shuffled, tmp_path,
                                                              buffer):
  sorted_dir, _ = sorted_and_shuffled
  config, plan = _plan(sorted_dir, str(tmp_path / "run"), **{"train.shuffle_buffer": buffer})
  split_share = plan.manifest.splits["train"].label_histogram["1"] / plan.rows["train"]
  share, n = _first_tenth_positive_share(config, plan)
  assert _within_sampling_error(share, split_share, n), (share, split_share, n)
  assert plan.order_warning == ""


def _rewrite_train_shard_in_id_order(data_dir):
  """What preprocessing wrote before rows were ordered by a hash: the shard sorted by id."""
  path = ip.split_shards(data_dir, "train", schema.read_manifest(data_dir))[0][0]
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  ids = [tf.io.parse_single_example(r, schema.FEATURE_SPEC)[schema.EXAMPLE_ID].numpy()
         for r in records]
  with tf.io.TFRecordWriter(path) as writer:
    for _, record in sorted(zip(ids, records)):
      writer.write(record)


def test_id_sorted_shards_get_a_warning_and_the_default_shuffle_still_mixes(
    sorted_and_shuffled, tmp_path):
  old_dir = str(tmp_path / "old")
  tf.io.gfile.makedirs(old_dir)
  for name in tf.io.gfile.listdir(sorted_and_shuffled[0]):
    src = os.path.join(sorted_and_shuffled[0], name)
    if not tf.io.gfile.isdir(src):
      tf.io.gfile.copy(src, os.path.join(old_dir, name))
  for split in schema.SPLITS:
    tf.io.gfile.makedirs(os.path.join(old_dir, split))
    for name in tf.io.gfile.listdir(os.path.join(sorted_and_shuffled[0], split)):
      tf.io.gfile.copy(os.path.join(sorted_and_shuffled[0], split, name),
                       os.path.join(old_dir, split, name))
  _rewrite_train_shard_in_id_order(old_dir)

  config, plan = _plan(old_dir, str(tmp_path / "run"))
  assert plan.shuffle_buffer == plan.rows["train"]
  assert plan.shuffle_covers == f"the whole train split ({plan.rows['train']} records)"
  assert plan.order_warning.startswith("warning: train shard train-00000-of-00001")
  assert "looks ordered by label" in plan.order_warning and "\n" not in plan.order_warning
  assert "training is not affected" in plan.order_warning
  split_share = plan.manifest.splits["train"].label_histogram["1"] / plan.rows["train"]
  share, n = _first_tenth_positive_share(config, plan)
  assert _within_sampling_error(share, split_share, n), (share, split_share)

  # The defect itself: through a small buffer (and no length pools, which mix a little
  # more), the first tenth is (almost) all negative.
  config, plan = _plan(old_dir, str(tmp_path / "run_small"),
                       **{"train.shuffle_buffer": 64, "train.padding": "fixed"})
  assert "smaller than the split" in plan.order_warning
  share, _ = _first_tenth_positive_share(config, plan)
  assert share < split_share / 4, (share, split_share)


def test_the_memory_bound_caps_the_buffer_and_a_resumed_run_keeps_it(sorted_and_shuffled,
                                                                      tmp_path):
  from trainer import checkpointing
  from trainer import config as config_lib
  sorted_dir, _ = sorted_and_shuffled
  model_dir = str(tmp_path / "run")
  config, plan = _plan(sorted_dir, model_dir, **{"train.shuffle_memory_mb": 0.05})
  assert 0 < plan.shuffle_buffer < plan.rows["train"]
  assert plan.shuffle_covers.startswith(f"{plan.shuffle_buffer} of the train split's")
  assert config.train.shuffle_buffer == plan.shuffle_buffer      # what config.json records
  config_lib.write_config(config, model_dir)
  os.makedirs(os.path.join(model_dir, checkpointing.CHECKPOINT_DIR))
  _, resumed = _plan(sorted_dir, model_dir)                        # default bound now
  assert resumed.shuffle_buffer == plan.shuffle_buffer
  assert resumed.shuffle_covers.endswith("(the earlier run's config.json)")
  with pytest.raises(ValueError, match="different train.shuffle_buffer"):
    _plan(sorted_dir, model_dir, **{"train.shuffle_buffer": 100})
