r"""Issue 21's target: a 12-trial Optuna search on the drug reviews, the best re-run over 3 seeds.

  python -m benchmarks.bench_search --data_dir=runs/data/drugreviews_binary \
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --work_dir=runs/bench_search

Runs `python -m launch.sweep optuna` over configs/search/drugreviews.yaml (recipe
configs/drugreviews_minilm.py), reads the study back and appends one JSON line to --out
(search.jsonl): every trial, the best trial's seeds against the target (the TF-IDF + LR
baseline's test F1 on exactly --data_dir's rows, plus MARGIN), the search's overhead (its wall
time minus the trials' own) and the provenance. A re-run continues the study in --work_dir.
`python -m benchmarks report` renders results/search.md.
"""
import argparse
import datetime
import json
import os
import sys
import time

from benchmarks import common

SPACE = os.path.join(common.REPO, "configs", "search", "drugreviews.yaml")
RECIPE = os.path.join(common.REPO, "configs", "data", "drugreviews_binary.args")
MARGIN = 0.05  # issue 21's target: the TF-IDF + LR baseline's test F1 plus this
TARGET_SOURCE = "benchmarks/tfidf_baseline.py on the same rows"


def tfidf_test_f1(data_dir):
  """The TF-IDF + LR baseline's test F1 on the binary drug reviews, on exactly data_dir's rows."""
  from benchmarks import tfidf_baseline   # TensorFlow and scikit-learn: only when run
  from preprocess import datasets
  return tfidf_baseline.run_on_data_dir([
      f"@{RECIPE}", f"--input={datasets.dataset_path('drugreviews-train')}",
      f"--test_input={datasets.dataset_path('drugreviews-test')}", "--vocab_file=unused"],
      data_dir, "binary")["summary"]["test_f1"]


def trial_record(t):
  return {"trial": t.number, "state": t.state.name.lower(), "params": t.params, "best_f1": t.value,
          "test_f1_tuned": t.user_attrs.get("test_f1_tuned"),
          "wall_seconds": t.user_attrs.get("wall_seconds")}


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", required=True, help="the drug reviews, preprocessed (binary)")
  p.add_argument("--encoder_dir", required=True, help="the converted all-MiniLM-L6-v2")
  p.add_argument("--work_dir", default=os.path.join(common.REPO, "runs", "bench_search"))
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--out", default=os.path.join(common.RESULTS, "search.jsonl"))
  return p


def main(argv=None):
  args = make_parser().parse_args(argv)
  baseline = tfidf_test_f1(args.data_dir)
  command = [sys.executable, "-m", "launch.sweep", "optuna", f"--space={SPACE}",
             f"--output_dir={args.work_dir}", f"--seeds={args.seeds}", "--",
             "--config=configs/drugreviews_minilm.py", f"--config.encoder.dir={args.encoder_dir}",
             f"--data_dir={args.data_dir}", "--config.export=False"]
  machine, before = common.machine(), common.sample()
  started = datetime.datetime.now()
  run = common.run_logged(command, os.path.join(args.work_dir, "search.log"))
  after, wall = common.sample(), run["seconds"]
  if run["returncode"]:
    raise SystemExit(f"error: the search failed (exit {run['returncode']}): see {run['log']}")

  import optuna  # pylint: disable=g-import-not-at-top
  storage = f"sqlite:///{os.path.abspath(os.path.join(args.work_dir, 'study.db'))}"
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.load_study(study_name="drugreviews", storage=storage)
  seeds = optuna.load_study(study_name=f"drugreviews-seeds-of-trial-{study.best_trial.number}",
                            storage=storage)
  trials = [trial_record(t) for t in study.get_trials() if t.state.is_finished()]
  seed_trials = [trial_record(t) for t in seeds.get_trials() if t.state.name == "COMPLETE"]
  mean, sd = common.mean_sd(t["test_f1_tuned"] for t in seed_trials)
  # Overhead: this invocation's wall minus the walls of the trials it ran (a continued study's
  # earlier trials are left out).
  trial_seconds = sum(t.user_attrs.get("wall_seconds", 0) for s in (study, seeds)
                      for t in s.get_trials() if t.datetime_start and t.datetime_start >= started)
  record = {
      "benchmark": "search", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": command,
      "data_dir": args.data_dir,
      "trials": trials, "best_trial": study.best_trial.number, "seed_trials": seed_trials,
      "seeds_test_f1_tuned_mean": mean, "seeds_test_f1_tuned_sd": sd,
      "tfidf_test_f1": baseline, "target_test_f1": baseline + MARGIN,
      "target_margin": MARGIN, "target_source": TARGET_SOURCE,
      "wall_seconds": round(wall, 1), "trial_seconds": round(trial_seconds, 1),
      "overhead_fraction": round(wall / trial_seconds - 1, 4) if trial_seconds else None,
      "provenance": common.provenance(machine, before, after),
  }
  common.append_record(args.out, record)
  print(json.dumps({k: v for k, v in record.items() if "trials" not in k}, indent=2))


if __name__ == "__main__":
  main()
