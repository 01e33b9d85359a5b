r"""Quality: fine-tuned all-MiniLM-L6-v2 vs a TF-IDF + logistic regression baseline, on the tweets.

  python -m benchmarks.bench_quality --task=binary [--seed=42] [--config.train.epochs=2 ...]
  python -m benchmarks.bench_quality --task=3class
  python -m benchmarks report      # renders results/quality.md from the records

Each stage is the package's own command, cached in --work_dir (--fresh redoes them): MiniLM
converted, the tweets preprocessed with configs/data/tweets_<task>.args, `trainer.task` on
configs/tweets_minilm.py with the task's head, --seed and any --config.<field>=<value> given
here, then tfidf_baseline.py on exactly that data directory's rows. Both models are summarised
alike (binary: test F1 at the validation-tuned threshold, PR-AUC; 3-class: macro-F1, accuracy);
one JSON line per run is appended to --out (quality_runs.jsonl).
"""
import argparse
import json
import os
import shutil
import sys
import time

from benchmarks import common

TASKS = {"binary": "binary", "3class": "multiclass"}  # task -> trainer head


def preprocess_argv(task, encoder_dir, data_dir, max_seq_length):
  """The preprocessing job's flags for the task's recipe (the baseline reads the same)."""
  from preprocess import datasets
  return [f"@{os.path.join(common.REPO, 'configs', 'data', f'tweets_{task}.args')}",
          f"--input={datasets.dataset_path('tweets')}", f"--encoder_dir={encoder_dir}",
          f"--output_dir={data_dir}", f"--max_seq_length={max_seq_length}"]


def run_cached(command, done, log, fresh):
  """Runs command unless `done` exists (and not fresh); -> seconds (0 when cached)."""
  if os.path.exists(done) and not fresh:
    return 0.0
  run = common.run_logged(command, log)
  if run["returncode"]:
    raise SystemExit(f"error: {' '.join(command[:3])} failed (exit {run['returncode']}): see {log}")
  return round(run["seconds"], 1)


def fine_tuned_summary(final, epochs, head):
  """The fine-tuned model's summary (tfidf_baseline.summarize) plus its training figures."""
  from benchmarks import tfidf_baseline
  summary = tfidf_baseline.summarize(final["validation"], final["test"], head)
  summary.update(validation_best_f1=final["validation"].get("best_f1"),
                 best_step=final.get("best_step"),
                 train_examples_per_sec=final.get("train_examples_per_sec"),
                 epochs_validation_best_f1=[e["validation"].get("best_f1") for e in epochs])
  return summary


def run_baseline(task, argv, data_dir, work_dir, fresh):
  """The baseline on the data directory's exact rows; cached per data directory."""
  from benchmarks import tfidf_baseline
  cache = os.path.join(work_dir, f"baseline_{os.path.basename(data_dir)}.json")
  if os.path.exists(cache) and not fresh:
    with open(cache) as f:
      return json.load(f)
  start = time.perf_counter()
  result = tfidf_baseline.run_on_data_dir(argv, data_dir, TASKS[task])
  result = {"summary": result["summary"], "C": result["C"], "class_weight": result["class_weight"],
            "seconds": round(time.perf_counter() - start, 1)}
  with open(cache, "w") as f:
    json.dump(result, f, indent=2)
  return result


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--task", choices=sorted(TASKS), default="binary")
  p.add_argument("--seed", type=int, default=42)
  p.add_argument("--max_seq_length", type=int, default=128, help="the preprocessing's")
  p.add_argument("--work_dir", default=os.path.join(common.REPO, "runs", "bench_quality"))
  p.add_argument("--run_name", default="", help="default: <task>_<time>")
  p.add_argument("--fresh", action="store_true",
                 help="re-run conversion, preprocessing and baseline instead of reusing them")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "quality_runs.jsonl"))
  return p


def main(argv=None):
  args, config_flags = make_parser().parse_known_args(argv)
  if any(not f.startswith("--config.") or "=" not in f for f in config_flags):
    make_parser().error(f"unknown flags {config_flags}; trainer settings go as "
                        "--config.<field>=<value>")
  run_name = args.run_name or f"{args.task}_{time.strftime('%Y%m%d-%H%M%S')}"
  work, head = os.path.abspath(args.work_dir), TASKS[args.task]
  encoder_dir = os.path.join(work, "minilm")
  data_dir = os.path.join(work, f"data_{args.task}_L{args.max_seq_length}")
  model_dir = os.path.join(work, "models", run_name)
  os.makedirs(work, exist_ok=True)
  machine, before = common.machine(), common.sample()

  stages = {"convert": {"seconds": run_cached(
      [sys.executable, "-m", "trainer.convert", "--bundled_minilm", f"--output_dir={encoder_dir}"],
      os.path.join(encoder_dir, "bert_config.json"),
      os.path.join(work, "convert.log"), args.fresh)}}
  argv_pre = preprocess_argv(args.task, encoder_dir, data_dir, args.max_seq_length)
  stages["preprocess"] = {"seconds": run_cached(
      [sys.executable, "-m", "preprocess.run", *argv_pre], os.path.join(data_dir, "manifest.json"),
      os.path.join(work, f"preprocess_{args.task}.log"), args.fresh)}
  shutil.rmtree(model_dir, ignore_errors=True)   # always from the pretrained weights
  # The trainer overrides: the task's head, the seed, then the --config.* flags given here.
  overrides = {"model.head": head, "train.seed": args.seed, "export": False}
  overrides.update(flag.removeprefix("--config.").split("=", 1) for flag in config_flags)
  train = common.run_logged(common.trainer_command(
      model_dir, data_dir, encoder_dir, [f"{k}={v}" for k, v in overrides.items()]),
      model_dir + ".log")
  results = common.read_json_in(model_dir, "eval_results.json") or {}
  if train["returncode"] or "final" not in results:
    raise SystemExit("error: the fine-tuning stopped before its final evaluation: see "
                     f"{train['log']}")
  stages["train"] = {"seconds": round(train["seconds"], 1),
                     "precision": common.precision_used(train["output"])}
  print(f"bench_quality: fine-tuned in {stages['train']['seconds']} s; baseline ...", flush=True)
  baseline = run_baseline(args.task, argv_pre, data_dir, work, args.fresh)

  record = {
      "task": args.task, "run_name": run_name, "max_seq_length": args.max_seq_length,
      "fine_tuned": {"config": common.read_config(model_dir), "overrides": overrides,
                     "config_file": "configs/tweets_minilm.py",
                     "summary": fine_tuned_summary(results["final"], results.get("epochs", []),
                                                   head),
                     "stages": stages, "seconds": sum(s["seconds"] for s in stages.values()),
                     "model_dir": model_dir},
      "baseline": baseline,
      "provenance": common.provenance(machine, before, common.sample()),
  }
  common.append_record(args.out, record)
  for name in ("fine_tuned", "baseline"):
    print(f"{name}: {json.dumps(record[name]['summary'])}")
  print(f"appended to {args.out}; python -m benchmarks report renders quality.md")


if __name__ == "__main__":
  main()
