"""Evaluation speed: the batch-128 baseline path vs today's sorted, many-batches-per-call one.

  WANDB_MODE=disabled python -m benchmarks.bench_eval \
      --data_dir=runs/data/tweets_binary --encoder_dir=runs/encoders/all-minilm-l6-v2

Paths (same weights: the converted all-MiniLM-L6-v2 encoder with a fresh binary head, float32):
  old  the baseline before issue 10, set explicitly (whatever the recipe says today): batches
       of OLD_EVAL_BATCH (128) in file order, padded to 16/32/64/128, one eval_step call each
  new  today's recipe: rows sorted by length in pools (input_pipeline.eval_batches), the
       recipe's evaluation batch (configs/tweets_minilm.py; --new_eval_batch overrides it),
       the recipe's padding (plan.resolve_padding: each batch to its longest row here, or
       boundaries derived from the manifest by trainer.buckets), eval_loop.STEPS_PER_CALL
       batches per call
  einsum_dense  the new path with the encoder's dense layers as Model Garden's einsums and
       the GELU a layer of its own (the model before trainer.encoders.FusedDense), a second
       classifier with the first one's weights
--paths chooses and orders them (default old,new).
Each round evaluates the whole split once per path (old, new, old, new, ...); figures are
examples/s per round and the ratio per round (the machine may be shared: ratios measured in the
same round carry over, absolute figures less so). Also measured: the padding efficiency of both
paths' evaluation batches, and of real training batches under both sets of boundaries. One JSON
line per (round, path) is appended to --out (eval.jsonl), with provenance
(benchmarks/common.py); `python -m benchmarks report` renders eval.md.
"""
import os
import statistics
import sys
import time

from benchmarks import common
import bertcore  # noqa: E402,F401  (before TensorFlow: selects Keras 2)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402,F401
from absl import app, flags  # noqa: E402

from trainer import config as config_lib  # noqa: E402
from trainer import encoders, eval_loop, input_pipeline, steps  # noqa: E402
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
PATHS = flags.DEFINE_list("paths", ["old", "new"], "paths to run, in this order in each round")
OUT = flags.DEFINE_string("out", os.path.join(common.RESULTS, "eval.jsonl"), "records")
OLD_BOUNDARIES = (16, 32, 64, 128)
OLD_EVAL_BATCH = 128   # the baseline's evaluation batch (the tweets recipe's until issue 10)


def setup():
  """(config, plan, strategy, eval_steps) of the tweets config on the real data and encoder:
  eval_steps {"model": today's classifier's eval step, "einsum_dense": the einsum model's}."""
  config = config_lib.load_config_file(
      os.path.join(common.REPO, "configs", "tweets_minilm.py"),
      {"encoder.dir": ENCODER.value, "wandb.mode": "disabled"})
  strategy = strategy_lib.build_strategy("one_device")
  strategy_lib.set_precision("float32")
  plan = plan_lib.plan_run(config, DATA_DIR.value, WORK_DIR.value, strategy)
  with strategy.scope():
    classifier, _ = model_lib.build_classifier(config, plan.manifest)
    einsum_classifier, einsum_encoder = model_lib.build_classifier(config, plan.manifest)
  encoders.use_fused_dense(einsum_encoder, enabled=False)
  einsum_classifier.set_weights(classifier.get_weights())
  return config, plan, strategy, {
      "model": steps.make_eval_step(strategy, classifier, config.model.head),
      "einsum_dense": steps.make_eval_step(strategy, einsum_classifier, config.model.head)}


def paths(config, plan):
  """{name: (config with that path's boundaries, evaluate_split keyword arguments)}."""
  new = plan_lib.resolved_config(config, plan)
  if NEW_BATCH.value:
    new.eval.global_batch_size = NEW_BATCH.value
  old = plan_lib.with_boundaries(config, OLD_BOUNDARIES, "bucket")
  old.eval.global_batch_size = OLD_EVAL_BATCH
  runs = {
      "old": (old, {"steps_per_call": 1, "pool_batches": 1}),
      "new": (new, {}),
      "einsum_dense": (new, {}),
  }
  return {name: runs[name] for name in PATHS.value}


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


def train_efficiency(config, plan, boundaries, padding):
  src = plan.source("train", config.model)
  cfg = plan_lib.with_boundaries(config, boundaries, padding)
  ds = input_pipeline.train_batches(src, cfg.train, cfg.data)
  return efficiency(ds.take(TRAIN_BATCHES.value))


def main(_):
  machine = common.machine()
  config, plan, strategy, eval_steps = setup()
  runs = paths(config, plan)
  settings = {name: {"eval_batch": cfg.eval.global_batch_size,
                     "padding": cfg.train.padding, "boundaries": list(cfg.train.bucket_boundaries),
                     "steps_per_call": kwargs.get("steps_per_call", eval_loop.STEPS_PER_CALL),
                     "pool_batches": kwargs.get("pool_batches", input_pipeline.POOL_BATCHES),
                     "eval_padding_efficiency": eval_efficiency(cfg, plan, kwargs)}
              for name, (cfg, kwargs) in runs.items()}
  print(f"split {SPLIT.value}: {plan.rows[SPLIT.value]} rows; " + "; ".join(
      f"{name}: {s}" for name, s in settings.items()), flush=True)
  train_efficiency_by = {}
  if TRAIN_BATCHES.value:
    for boundaries, padding in ((OLD_BOUNDARIES, "bucket"),
                                (plan.bucket_boundaries, plan.padding)):
      name = ",".join(map(str, boundaries)) if padding == "bucket" else padding
      train_efficiency_by[name] = train_efficiency(config, plan, boundaries, padding)
    print(f"training batches ({TRAIN_BATCHES.value}), padding efficiency by boundaries: "
          f"{train_efficiency_by}", flush=True)
  seconds = {name: [] for name in runs}
  metrics = {}
  for r in range(1, ROUNDS.value + 1):
    for name, (cfg, kwargs) in runs.items():
      before = common.sample()
      start = time.perf_counter()
      evaluated = eval_loop.evaluate_split(
          SPLIT.value, config=cfg, plan=plan, strategy=strategy,
          eval_step=eval_steps["einsum_dense" if name == "einsum_dense" else "model"], **kwargs)
      seconds[name].append(time.perf_counter() - start)
      metrics[name] = evaluated.metrics
      record = dict(settings[name], path=name, round=r, split=SPLIT.value,
                    rows=plan.rows[SPLIT.value], seconds=seconds[name][-1],
                    eval_eps=plan.rows[SPLIT.value] / seconds[name][-1], precision="float32",
                    train_padding_efficiency=train_efficiency_by,
                    metrics={k: float(metrics[name][k]) for k in ("loss", "pr_auc", "best_f1")},
                    command=["python", "-m", "benchmarks.bench_eval"] + sys.argv[1:],
                    provenance=common.provenance(machine, before, common.sample()))
      common.append_record(OUT.value, record)
      print(f"round {r} {name}: {record['eval_eps']:.1f} examples/s ({record['seconds']:.1f} s)"
            f"{'  LOADED' if record['provenance']['loaded'] else ''}", flush=True)
  first, *others = runs
  for name in others:
    ratios = [b / a for b, a in zip(seconds[first], seconds[name])]
    same = all(np.isclose(metrics[first][k], metrics[name][k], rtol=1e-4, atol=1e-5)
               for k in ("loss", "pr_auc", "roc_auc", "best_f1"))
    print(f"{name} vs {first}: x{statistics.median(ratios):.2f} (per round: "
          f"{', '.join(f'x{x:.2f}' for x in ratios)}); metrics equal (loss, pr_auc, roc_auc, "
          f"best_f1 within 1e-4): {same}; loss {first} {metrics[first]['loss']:.6f} {name} "
          f"{metrics[name]['loss']:.6f}")

if __name__ == "__main__":
  app.run(main)
