"""Evaluation speed: today's path vs the sorted, many-batches-per-call one, interleaved.

  WANDB_MODE=disabled python benchmarks/bench_eval.py \
      --data_dir=runs/data/tweets_binary --encoder_dir=runs/encoders/all-minilm-l6-v2

Paths (same weights: the converted all-MiniLM-L6-v2 encoder with a fresh binary head, float32):
  old  batches in file order, padded to 16/32/64/128, one eval_step call per batch
  new  rows sorted by length in pools (input_pipeline.eval_batches), boundaries derived from
       the manifest (trainer.buckets), eval_loop.STEPS_PER_CALL batches per call
Each round evaluates the whole split once per path (old, new, old, new, ...); figures are
examples/s per round and the median of the per-round ratios (the machine is shared: absolute
figures are noise, ratios measured in the same round are not). Also printed: the padding
efficiency of both paths' evaluation batches, and of real training batches under both sets
of boundaries. Results: benchmarks/results/eval.md.
"""
import os
import statistics
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import bertcore  # noqa: E402,F401  (before TensorFlow: selects Keras 2)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from trainer import config as config_lib  # noqa: E402
from trainer import eval_loop, input_pipeline, steps  # noqa: E402
from trainer import model as model_lib  # noqa: E402
from trainer import plan as plan_lib  # noqa: E402
from trainer import strategy as strategy_lib  # noqa: E402

DATA_DIR = flags.DEFINE_string("data_dir", "runs/data/tweets_binary", "preprocessed tweets")
ENCODER = flags.DEFINE_string("encoder_dir", "runs/encoders/all-minilm-l6-v2", "encoder dir")
SPLIT = flags.DEFINE_string("split", "validation", "split to evaluate")
ROUNDS = flags.DEFINE_integer("rounds", 2, "interleaved rounds (each path once per round)")
TRAIN_BATCHES = flags.DEFINE_integer("train_batches", 400, "training batches for the "
                                     "training padding efficiency (0 = skip)")
WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/bench_eval", "scratch model_dir")
NEW_BATCH = flags.DEFINE_integer("new_eval_batch", 0, "the new path's eval batch size "
                                 "(0 = the config's, as the old path)")
OLD_BOUNDARIES = (16, 32, 64, 128)


def loadavg():
  with open("/proc/loadavg") as f:
    return f.read().split()[0]


def setup():
  """(config, plan, strategy, eval_step) of the tweets config on the real data and encoder."""
  config = config_lib.load_config_file(
      os.path.join(os.path.dirname(__file__), "..", "configs", "tweets_minilm.py"),
      {"encoder.dir": ENCODER.value, "wandb.mode": "disabled"})
  strategy = strategy_lib.build_strategy("one_device")
  strategy_lib.set_precision("float32")
  plan = plan_lib.plan_run(config, DATA_DIR.value, WORK_DIR.value, strategy)
  with strategy.scope():
    classifier, _ = model_lib.build_classifier(config, plan.manifest)
  return config, plan, strategy, steps.make_eval_step(strategy, classifier, config.model.head)


def paths(config, plan):
  """{name: (config with that path's boundaries, evaluate_split keyword arguments)}."""
  new = plan_lib.with_boundaries(config, plan.bucket_boundaries)
  if NEW_BATCH.value:
    new.eval.global_batch_size = NEW_BATCH.value
  return {
      "old": (plan_lib.with_boundaries(config, OLD_BOUNDARIES),
              {"steps_per_call": 1, "pool_batches": 1}),
      "new": (new, {}),
  }


def efficiency(batches):
  """Real / padded tokens over batches, counting only real rows (weights > 0 if present)."""
  real = padded = 0
  for b in batches:
    mask = b["input_mask"].numpy()
    real += int(mask.sum())
    padded += mask.size
  return real / padded


def eval_efficiency(config, plan, kwargs):
  src = plan.source(SPLIT.value, config.model)
  return efficiency(input_pipeline.eval_batches(
      src, config.eval.global_batch_size, config.train, config.data,
      pool_batches=kwargs.get("pool_batches", input_pipeline.POOL_BATCHES)))


def train_efficiency(config, plan, boundaries):
  src = plan.source("train", config.model)
  cfg = plan_lib.with_boundaries(config, boundaries)
  ds = input_pipeline.train_batches(src, cfg.train, cfg.data)
  return efficiency(ds.take(TRAIN_BATCHES.value))


def main(_):
  config, plan, strategy, eval_step = setup()
  print(f"split {SPLIT.value}: {plan.rows[SPLIT.value]} rows; eval batch "
        f"{config.eval.global_batch_size}; derived boundaries {plan.bucket_boundaries}; "
        f"steps per call {eval_loop.STEPS_PER_CALL}", flush=True)
  runs = paths(config, plan)
  for name, (cfg, kwargs) in runs.items():
    print(f"{name}: evaluation padding efficiency {eval_efficiency(cfg, plan, kwargs):.3f}",
          flush=True)
  if TRAIN_BATCHES.value:
    for boundaries in (OLD_BOUNDARIES, plan.bucket_boundaries):
      print(f"training batches of {config.train.global_batch_size} ({TRAIN_BATCHES.value}), "
            f"boundaries {boundaries}: padding efficiency "
            f"{train_efficiency(config, plan, boundaries):.3f}", flush=True)
  seconds = {name: [] for name in runs}
  metrics = {}
  for r in range(ROUNDS.value):
    for name, (cfg, kwargs) in runs.items():
      load = loadavg()
      start = time.perf_counter()
      evaluated = eval_loop.evaluate_split(SPLIT.value, config=cfg, plan=plan,
                                           strategy=strategy, eval_step=eval_step, **kwargs)
      seconds[name].append(time.perf_counter() - start)
      metrics[name] = evaluated.metrics
      print(f"round {r + 1} {name}: {plan.rows[SPLIT.value] / seconds[name][-1]:.1f} "
            f"examples/s ({seconds[name][-1]:.1f} s, loadavg {load} -> {loadavg()})", flush=True)
  ratios = [o / n for o, n in zip(seconds["old"], seconds["new"])]
  print(f"new vs old: x{statistics.median(ratios):.2f} (per round: "
        f"{', '.join(f'x{x:.2f}' for x in ratios)})")
  same = all(np.isclose(metrics["old"][k], metrics["new"][k], rtol=1e-4, atol=1e-5)
             for k in ("loss", "pr_auc", "roc_auc", "best_f1"))
  print(f"metrics equal (loss, pr_auc, roc_auc, best_f1 within 1e-4): {same}; "
        f"loss old {metrics['old']['loss']:.6f} new {metrics['new']['loss']:.6f}")


if __name__ == "__main__":
  app.run(main)
