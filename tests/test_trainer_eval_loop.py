"""trainer.eval_loop + steps.make_eval_step: the sorted, many-batches-per-call evaluation gives
the metrics of the plain one (file order, one batch per call) on a tiny random encoder."""
import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from trainer import eval_loop, input_pipeline, steps
from trainer import model as model_lib
from trainer import plan as plan_lib
from trainer import strategy as strategy_lib

EVAL_BATCH = 16


def _setup(tmp_path, head):
  data_dir = str(tmp_path / "data")
  labels = ("neg", "pos") if head == "binary" else ("neg", "neu", "pos")
  rows = lambda n, seed: fx.example_rows(n, seed=seed, num_labels=len(labels), max_len=60)
  fx.write_data_dir(data_dir, {"train": rows(40, 1), "validation": rows(150, 2),
                               "test": rows(37, 3)}, labels=labels, num_shards=3,
                    max_seq_length=64)
  fx.write_vocab(data_dir)
  config = fx.tiny_config(data_dir, **{"model.head": head, "eval.global_batch_size": EVAL_BATCH,
                                       "train.bucket_boundaries": (16, 32, 64)})
  strategy = strategy_lib.build_strategy("one_device")
  plan = plan_lib.plan_run(config, data_dir, str(tmp_path / "run"), strategy)
  config = plan_lib.resolved_config(config, plan)
  with strategy.scope():
    classifier, _ = model_lib.build_classifier(config, plan.manifest)
  return config, plan, strategy, steps.make_eval_step(strategy, classifier, head)


def _evaluate(split, setup, **kwargs):
  config, plan, strategy, eval_step = setup
  return eval_loop.evaluate_split(split, config=config, plan=plan, strategy=strategy,
                                  eval_step=eval_step, **kwargs)


@pytest.mark.parametrize("head", ["binary", "multiclass"])
def test_sorted_many_batch_calls_give_the_per_batch_metrics(tmp_path, head):
  setup = _setup(tmp_path, head)
  checks = []
  # 150 rows / 16 = 10 steps: calls of 3, 3, 3 and 1 steps.
  new = _evaluate("validation", setup, steps_per_call=3, between_calls=lambda: checks.append(1))
  old = _evaluate("validation", setup, steps_per_call=1, pool_batches=1)
  assert len(checks) == 4 + 1          # before every call and after the last
  assert len(new.labels) == len(old.labels) == 150
  for name, value in old.metrics.items():
    if isinstance(value, float):
      # A rank metric (PR-AUC, ROC-AUC) moves when float noise within the probabilities' 1e-6
      # check below swaps two near-tied rows of the random encoder (PR-AUC off by 4e-5 once, in
      # a full-suite run under load; the exact cause was not pinned down); the rest match closely.
      close = dict(abs=1e-3) if name.endswith("auc") else dict(rel=1e-5, abs=1e-6)
      assert new.metrics[name] == pytest.approx(value, **close), name
    else:
      assert new.metrics[name] == value, name
  # Per example: each class's probabilities are the same multiset (the order differs).
  for c in np.unique(old.labels):
    np.testing.assert_allclose(np.sort(new.probs[new.labels == c], axis=0),
                               np.sort(old.probs[old.labels == c], axis=0), atol=1e-6)


def test_validation_and_test_share_one_traced_eval_function(tmp_path):
  setup = _setup(tmp_path, "binary")
  eval_step = setup[3]
  assert _evaluate("validation", setup, steps_per_call=4).metrics["num_examples"] == 150
  assert _evaluate("test", setup, steps_per_call=4).metrics["num_examples"] == 37
  assert eval_step.experimental_get_tracing_count() == 1


def test_sorting_cuts_the_padding_of_evaluation_batches(tmp_path):
  config, plan, _, _ = _setup(tmp_path, "binary")
  src = plan.source("validation", config.model)

  def efficiency(pool_batches):
    ds = input_pipeline.eval_batches(src, EVAL_BATCH, config.train, config.data,
                                     pool_batches=pool_batches)
    real = padded = 0
    for batch in ds:
      real += int(tf.reduce_sum(batch["input_mask"]))
      padded += int(tf.size(batch["input_mask"]))
    return real / padded
  # Rows of 3..62 tokens: in file order most batches of 16 pad to 64.
  assert efficiency(input_pipeline.POOL_BATCHES) > efficiency(1) + 0.15   # 0.65 vs 0.45
