r"""Issue 21's target: a 12-trial Optuna search on the drug reviews, the best re-run over 3 seeds.

  .venv/bin/python benchmarks/bench_search.py --data_dir=runs/data/drugreviews_binary \
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --work_dir=runs/bench_search

Runs `python -m launch.sweep optuna` over configs/search/drugreviews.yaml (the recipe,
configs/drugreviews_minilm.py, as is otherwise; the data and encoder as its docstring makes them),
then reads the study back and appends one JSON line to benchmarks/results/search.jsonl: every
trial (params, validation best_f1, test F1 at the validation-tuned threshold, wall), the seeds'
mean ± SD of that test F1 against the target (TF-IDF + LR 0.818 + 0.05 = 0.868), and the
search's overhead: its wall time minus the trials' own (what running them by hand would cost).
A re-run continues the study (cached in --work_dir) instead of starting over.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SPACE = os.path.join(REPO, "configs", "search", "drugreviews.yaml")
TARGET_TEST_F1 = 0.868  # TF-IDF + LR's 0.818 (benchmarks/results/long_text.md) + 0.05


def trial_record(t):
  return {"trial": t.number, "state": t.state.name.lower(), "params": t.params, "best_f1": t.value,
          "test_f1_tuned": t.user_attrs.get("test_f1_tuned"),
          "wall_seconds": t.user_attrs.get("wall_seconds")}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--data_dir", required=True, help="the drug reviews, preprocessed (binary)")
  p.add_argument("--encoder_dir", required=True, help="the converted all-MiniLM-L6-v2")
  p.add_argument("--work_dir", default=os.path.join(REPO, "runs", "bench_search"))
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--out", default=os.path.join(HERE, "results", "search.jsonl"))
  args = p.parse_args(argv)
  command = [sys.executable, "-m", "launch.sweep", "optuna", f"--space={SPACE}",
             f"--output_dir={args.work_dir}", f"--seeds={args.seeds}", "--",
             "--config=configs/drugreviews_minilm.py", f"--config.encoder.dir={args.encoder_dir}",
             f"--data_dir={args.data_dir}", "--config.export=False"]
  env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))
  started, start = datetime.datetime.now(), time.perf_counter()
  code = subprocess.run(command, cwd=REPO, env=env).returncode
  wall = time.perf_counter() - start
  if code:
    raise SystemExit(f"error: the search failed (exit {code})")

  import optuna  # pylint: disable=g-import-not-at-top
  storage = f"sqlite:///{os.path.abspath(os.path.join(args.work_dir, 'study.db'))}"
  study = optuna.load_study(study_name="drugreviews", storage=storage)
  seeds = optuna.load_study(study_name=f"drugreviews-seeds-of-trial-{study.best_trial.number}",
                            storage=storage)
  trials = [trial_record(t) for t in study.get_trials() if t.state.is_finished()]
  seed_trials = [trial_record(t) for t in seeds.get_trials() if t.state.name == "COMPLETE"]
  test_f1 = [t["test_f1_tuned"] for t in seed_trials if t["test_f1_tuned"] is not None]
  # Overhead: this invocation's wall minus the walls of the trials it ran (a continued study's
  # earlier trials are left out).
  trial_seconds = sum(t.user_attrs.get("wall_seconds", 0) for s in (study, seeds)
                      for t in s.get_trials() if t.datetime_start and t.datetime_start >= started)
  record = {
      "benchmark": "search", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
      "trials": trials, "best_trial": study.best_trial.number, "seed_trials": seed_trials,
      "seeds_test_f1_tuned_mean": statistics.mean(test_f1) if test_f1 else None,
      "seeds_test_f1_tuned_sd": statistics.stdev(test_f1) if len(test_f1) > 1 else None,
      "target_test_f1": TARGET_TEST_F1,
      "wall_seconds": round(wall, 1), "trial_seconds": round(trial_seconds, 1),
      "overhead_fraction": round(wall / trial_seconds - 1, 4) if trial_seconds else None,
  }
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "a") as f:
    f.write(json.dumps(record) + "\n")
  print(json.dumps({k: v for k, v in record.items() if "trials" not in k}, indent=2))


if __name__ == "__main__":
  main()
