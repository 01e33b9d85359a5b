"""trainer.steps, trainer.checkpointing, trainer.plan alone: no training loop, no processes."""
import os

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bertcore import schema
from trainer import checkpointing, plan as plan_lib, steps
from trainer import config as config_lib
from trainer import strategy as strategy_lib

BATCH = 4


def tiny_classifier():
  """Embedding -> mean over tokens -> 1 logit: the classifier interface on 33 weights."""
  inputs = {k: tf_keras.Input(shape=(None,), dtype=tf.int32, name=k)
            for k in ("input_word_ids", "input_mask", "input_type_ids")}
  embedded = tf_keras.layers.Embedding(len(fx.VOCAB), 1)(inputs["input_word_ids"])
  pooled = tf_keras.layers.GlobalAveragePooling1D()(embedded)
  logits = tf_keras.layers.Dense(1)(pooled)
  return tf_keras.Model(inputs, logits)


def batches(labels):
  """Repeating batches: "good" rows labelled 1, "bad" rows labelled `labels`."""
  ids = tf.constant([[2, 4, 3], [2, 5, 3], [2, 4, 3], [2, 5, 3]], tf.int32)
  return tf.data.Dataset.from_tensors({
      "input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids),
      "labels": tf.constant([[1.0], [labels], [1.0], [labels]])}).repeat()


def make_step(strategy, **train):
  config = config_lib.default_config()
  config.train.update(global_batch_size=BATCH, learning_rate=0.1, **train)
  tf_keras.utils.set_random_seed(0)   # the tiny model's start decides how fast it learns
  with strategy.scope():
    classifier = tiny_classifier()
    optimizer = tf_keras.optimizers.SGD(0.5)
    step = tf.Variable(0, dtype=tf.int64)
  fn = steps.make_train_step(strategy, classifier, optimizer, step, config.train, "binary")
  return fn, classifier, step


def run(fn, labels, n, strategy):
  iterator = iter(strategy.experimental_distribute_dataset(batches(labels)))
  return fn(iterator, tf.constant(n, tf.int32), tf.constant(0.0))


def test_train_step_lowers_the_loss_and_counts_steps():
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  fn, _, step = make_step(strategy)
  losses, finites, real, padded, flag = run(fn, 0.0, 20, strategy)
  losses = losses.numpy()
  assert finites.numpy().all() and losses.shape == (20,)
  assert losses[-1] < losses[0] - 0.05 and (np.diff(losses) < 0).all()
  assert int(step.numpy()) == 20
  assert float(real) == float(padded) == 20 * BATCH * 3 and float(flag) == 0.0


def test_a_non_finite_step_applies_no_update():
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  fn, classifier, step = make_step(strategy)
  before = [v.numpy().copy() for v in classifier.trainable_variables]
  losses, finites, *_ = run(fn, float("nan"), 2, strategy)
  assert not finites.numpy().any() and np.isnan(losses.numpy()).all()
  for old, new in zip(before, classifier.trainable_variables):
    np.testing.assert_array_equal(old, new.numpy())
  assert int(step.numpy()) == 2        # the step still counts (nan_policy decides)


def test_best_tracker_keeps_the_maximum_and_survives_a_restore(tmp_path):
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  classifier = tiny_classifier()
  best = checkpointing.BestTracker(classifier, strategy, str(tmp_path))
  assert best.update(0.5, 8) and not best.update(0.4, 16) and not best.update(float("nan"), 24)
  assert not best.update(None, 32) and best.update(0.6, 40)
  assert (float(best.value.numpy()), int(best.step.numpy())) == (0.6, 40)
  saved = [v.numpy().copy() for v in classifier.weights]

  other = tiny_classifier()
  again = checkpointing.BestTracker(other, strategy, str(tmp_path / "elsewhere"))
  again.restore_value(str(tmp_path))
  assert (float(again.value.numpy()), int(again.step.numpy())) == (0.6, 40)
  assert not again.update(0.55, 48)
  assert again.restore_weights(str(tmp_path / "elsewhere"), str(tmp_path))
  for want, got in zip(saved, other.weights):
    np.testing.assert_array_equal(want, got.numpy())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("data"))
  fx.write_data_dir(d, {"train": fx.example_rows(40, seed=1, num_labels=3),
                        "validation": fx.example_rows(12, seed=2, num_labels=3)},
                    labels=("neg", "neu", "pos"))
  fx.write_vocab(d)
  return d


def test_plan_run_returns_what_the_checks_found(data_dir, tmp_path):
  config = fx.tiny_config(data_dir, **{"model.positive_label": "pos", "train.epochs": 3})
  plan = plan_lib.plan_run(config, data_dir + "/", str(tmp_path / "run"),
                           strategy_lib.build_strategy("one_device"))
  assert plan.data_dir == data_dir and plan.labels == ("neg", "neu", "pos")
  assert plan.label_names == ("not pos", "pos")
  assert plan.rows == {"train": 40, "validation": 12, "test": 0}
  assert plan.labelled == {"train": True, "validation": True, "test": False}
  assert (plan.steps_per_epoch, plan.total_steps) == (40 // 16, 3 * (40 // 16))
  assert [r for _, r in plan.shards["train"]] == [20, 20] and plan.skipped_shards == ()
  assert plan.vocab_file == os.path.join(data_dir, "vocab.txt")


@pytest.mark.parametrize("overrides,error,message", [
    ({}, schema.DataError, "needs --config.model.positive_label"),
    ({"model.head": "multiclass", "train.class_weights": (1.0, 2.0)}, ValueError,
     "class_weights has 2 weights for 3 classes"),
    ({"model.head": "multiclass", "train.global_batch_size": 64}, schema.DataError,
     "fewer than one global batch of 64"),
])
def test_plan_run_refuses_bad_configs_in_one_line(data_dir, tmp_path, overrides, error,
                                                  message):
  config = fx.tiny_config(data_dir, **overrides)
  with pytest.raises(error, match=message) as raised:
    plan_lib.plan_run(config, data_dir, str(tmp_path / "run"),
                      strategy_lib.build_strategy("one_device"))
  assert "\n" not in str(raised.value)


# The tweets' train split statistics (trainer/buckets.py derives 16/24/.../64/128 from them).
TWEET_LENGTHS = {"max": 265, "mean": 33.0509, "p50": 33, "p90": 49, "p95": 54, "p99": 61}


@pytest.fixture()
def tweet_like_dir(tmp_path):
  """A data dir whose manifest records the tweets' token-length percentiles (max_seq 128)."""
  d = str(tmp_path / "tweet_like")
  fx.write_data_dir(d, {"train": fx.example_rows(40, seed=1),
                        "validation": fx.example_rows(12, seed=2)}, max_seq_length=128)
  fx.write_vocab(d)
  manifest = schema.read_manifest(d)
  manifest.splits["train"].token_length.clear()
  manifest.splits["train"].token_length.update(TWEET_LENGTHS)
  schema.write_manifest(d, manifest)
  return d


def _plan(data_dir, model_dir, **overrides):
  config = fx.tiny_config(data_dir, **{"model.positive_label": "1", **overrides})
  return config, plan_lib.plan_run(config, data_dir, model_dir,
                                   strategy_lib.build_strategy("one_device"))


def test_plan_derives_bucket_boundaries_from_the_manifest(tweet_like_dir, tmp_path):
  _, plan = _plan(tweet_like_dir, str(tmp_path / "run"),
                  **{"train.bucket_boundaries": (), "train.global_batch_size": 32,
                     "train.padding": "bucket"})
  assert plan.bucket_boundaries == (16, 24, 32, 40, 48, 56, 64, 128)
  assert plan.boundaries_from == "manifest"


def test_explicit_bucket_boundaries_win(tweet_like_dir, tmp_path):
  _, plan = _plan(tweet_like_dir, str(tmp_path / "run"), **{"train.bucket_boundaries": (32, 64)})
  assert (plan.bucket_boundaries, plan.boundaries_from) == ((32, 64), "config")


def test_a_resumed_run_keeps_its_recorded_boundaries(tweet_like_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  config, plan = _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": (),
                                                      "train.padding": "bucket"})
  # What train_and_evaluate leaves: the resolved config and a checkpoint directory.
  config_lib.write_config(plan_lib.resolved_config(config, plan), model_dir)
  os.makedirs(os.path.join(model_dir, checkpointing.CHECKPOINT_DIR))
  manifest = schema.read_manifest(tweet_like_dir)   # the data now says something else
  manifest.splits["train"].token_length.update(p50=20, p90=25, p95=26, p99=27, mean=20.0)
  schema.write_manifest(tweet_like_dir, manifest)
  _, resumed = _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": ()})
  assert (resumed.padding, resumed.bucket_boundaries) == ("bucket", plan.bucket_boundaries)
  assert resumed.boundaries_from == "config.json"      # padding auto: the recorded one
  # The same values given explicitly are the same run; other values are refused.
  _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": plan.bucket_boundaries})
  with pytest.raises(ValueError, match="different train.bucket_boundaries"):
    _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": (16, 32, 64, 128)})


@pytest.mark.parametrize("overrides,padding", [
    ({"train.bucket_boundaries": ()}, "longest"),             # shapes cost little: no buckets
    ({"train.bucket_boundaries": (), "xla": True}, "bucket"),   # a compiled program per shape
    ({"train.bucket_boundaries": (32, 64)}, "bucket"),          # shapes asked for
    ({"train.bucket_boundaries": (), "train.padding": "fixed"}, "fixed"),
])
def test_auto_padding_follows_how_the_step_runs(tweet_like_dir, tmp_path, overrides, padding):
  config, plan = _plan(tweet_like_dir, str(tmp_path / "run"), **overrides)
  assert plan.padding == padding
  resolved = plan_lib.resolved_config(config, plan)
  assert (resolved.train.padding, config.train.padding) == (padding, overrides.get(
      "train.padding", "auto"))
  assert (plan.bucket_boundaries == ()) == (padding != "bucket")


def test_a_resumed_run_keeps_its_recorded_padding(tweet_like_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  config, plan = _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": ()})
  config_lib.write_config(plan_lib.resolved_config(config, plan), model_dir)
  os.makedirs(os.path.join(model_dir, checkpointing.CHECKPOINT_DIR))
  _, resumed = _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": (), "xla": True})
  assert (plan.padding, resumed.padding) == ("longest", "longest")
  with pytest.raises(ValueError, match="different train.padding"):
    _plan(tweet_like_dir, model_dir, **{"train.bucket_boundaries": (),
                                        "train.padding": "bucket"})


def test_deriving_without_length_percentiles_is_one_clear_error(data_dir, tmp_path):
  with pytest.raises(schema.DataError, match="lack p50, p90, p95, p99.*bucket_boundaries=16"):
    _plan(data_dir, str(tmp_path / "run"), **{"train.bucket_boundaries": (),
                                              "train.padding": "bucket",
                                              "model.positive_label": "pos"})


def _with_manifest(data_dir, **changes):
  """Rewrites data_dir's manifest with some fields changed (dataclasses.replace)."""
  import dataclasses
  schema.write_manifest(data_dir, dataclasses.replace(schema.read_manifest(data_dir), **changes))


@pytest.mark.parametrize("truncation", ["head", "head_tail"])
def test_the_export_tokenizes_with_the_manifest_truncation(tmp_path, truncation):
  from trainer import export_step
  d = str(tmp_path / "data")
  fx.write_data_dir(d, {"train": fx.example_rows(40, seed=1),
                        "validation": fx.example_rows(12, seed=2)})
  vocab_file = fx.write_vocab(d)
  _with_manifest(d, truncation=truncation)
  _, plan = _plan(d, str(tmp_path / "run"))
  encoder = export_step.text_encoder_for(plan, vocab_file)
  assert (encoder.truncation, encoder.max_seq_length) == (truncation, 32)


def test_max_seq_length_512_plans_up_to_8_bucket_shapes(tmp_path):
  d = str(tmp_path / "data")
  fx.write_data_dir(d, {"train": fx.example_rows(40, seed=1),
                        "validation": fx.example_rows(12, seed=2)}, max_seq_length=512)
  fx.write_vocab(d)
  manifest = schema.read_manifest(d)
  manifest.splits["train"].token_length.update(
      mean=120.4, p50=98, p90=251, p95=330, p99=470, max=2048)
  schema.write_manifest(d, manifest)
  _, plan = _plan(d, str(tmp_path / "run"), **{"train.bucket_boundaries": (),
                                               "train.padding": "bucket",
                                               "train.global_batch_size": 32,
                                               "encoder.max_position_embeddings": 512})
  assert plan.bucket_boundaries == (40, 72, 104, 152, 200, 248, 336, 512)
  # The tiny encoder has 128 positions: one line naming the limit and the fix.
  with pytest.raises(schema.DataError) as raised:
    _plan(d, str(tmp_path / "run2"))
  assert str(raised.value) == (
      "the data's max_seq_length 512 exceeds encoder.max_position_embeddings 128; re-run "
      "preprocessing with --max_seq_length=128 or less, or raise "
      "--config.encoder.max_position_embeddings")


def test_a_checkpoint_encoder_refuses_a_longer_max_seq_length_in_one_line(tmp_path):
  from trainer import model as model_lib
  encoder_dir = tmp_path / "encoder"
  encoder_dir.mkdir()
  fx.write_vocab(str(encoder_dir))
  (encoder_dir / "bert_config.json").write_text(
      '{"vocab_size": %d, "max_position_embeddings": 512}' % len(fx.VOCAB))
  config = config_lib.default_config()
  config.encoder.update(kind="checkpoint", dir=str(encoder_dir))
  d = str(tmp_path / "data")
  for length in (512, 513):
    manifest = fx.write_data_dir(d, {"train": fx.example_rows(4, seed=1)},
                                 max_seq_length=length)
    if length == 512:  # up to max_position_embeddings is fine
      assert model_lib.check_encoder_fits_data(config.encoder, manifest) == str(
          encoder_dir / "vocab.txt")
      continue
    with pytest.raises(schema.DataError) as raised:
      model_lib.check_encoder_fits_data(config.encoder, manifest)
    assert str(raised.value) == (
        f"the data's max_seq_length 513 exceeds the encoder's max_position_embeddings 512 "
        f"({encoder_dir}); re-run preprocessing with --max_seq_length=512 or less")
