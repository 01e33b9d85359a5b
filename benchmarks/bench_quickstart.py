"""The main job as a new user runs it: scripts/quickstart.sh, timed end to end, per precision.

  python -m benchmarks.bench_quickstart --variants=default,float32 [--rounds=1] [--baseline=REV]

Each run is `RUNS=<work_dir>/<stamp>/<variant>-round<r> bash scripts/quickstart.sh` from a
fresh RUNS directory (conversion, preprocessing, training, export and the predictions all
included, W&B offline as the script's default), interleaved A B A B ... over --rounds.
Variants:
  default   the script as it is (precision=auto: mixed bfloat16 on CPUs with native bf16,
            float32 elsewhere)
  float32   TRAIN_FLAGS=--config.precision=float32: what a CPU without native bf16 runs,
            forced on this one
  baseline  with --baseline=REV: the default variant run from a git worktree of REV (kept under
            --work_dir, sharing this checkout's .venv), so that a change is measured against the
            code before it in the same session; its record's code_commit is REV's hash
One JSON line per run is appended to --out: wall_seconds (the whole script), step_seconds (per
step of the script, from its `==> [time] k/5` lines; step 3 is fine-tuning), train_eps (steady
state, from the run's eval_results.json), test_f1_tuned (test F1 at the threshold tuned on
validation), threshold, test_pr_auc, test_best_f1, precision (as trainer.task printed it),
train_flags, the command and environment, and provenance (benchmarks/common.py).
"""
import argparse
import datetime
import os
import re
import time

from benchmarks import common

VARIANTS = {"default": [], "float32": ["--config.precision=float32"]}
MODEL_DIR = os.path.join("models", "tweets_minilm")   # under RUNS, as quickstart.sh


def quickstart_env(runs_dir, train_flags):
  """The environment of one run: its own RUNS dir, the trainer flags, W&B offline."""
  return {"RUNS": runs_dir, "TRAIN_FLAGS": " ".join(train_flags),
          "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}


STEP_LINE = re.compile(r"^==> \[(\d\d:\d\d:\d\d)\] (\d+)/\d+ ", re.M)


def step_seconds(output):
  """{"1": seconds, ...}: each quickstart.sh step's time, from one `==> [HH:MM:SS] k/5` line to
  the next (the last step, which has no next line, is left out; a step over midnight wraps)."""
  marks = [(datetime.datetime.strptime(t, "%H:%M:%S"), k) for t, k in STEP_LINE.findall(output)]
  return {k: (later - t).seconds for (t, k), (later, _) in zip(marks, marks[1:])}


def read_run(runs_dir, output):
  """The figures of one finished quickstart run, from its model dir and its output."""
  final = common.read_final(os.path.join(runs_dir, MODEL_DIR)) or {}
  keys = ("train_eps", "train_padding_efficiency", "test_f1_tuned", "threshold", "test_pr_auc",
          "test_best_f1", "validation_pr_auc", "validation_best_f1")
  return dict({k: final.get(k) for k in keys}, precision=common.precision_used(output),
              step_seconds=step_seconds(output))


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--variants", default="default,float32")
  p.add_argument("--rounds", type=int, default=1)
  p.add_argument("--work_dir", default="/tmp/bench_quickstart",
                 help="one RUNS dir per run, kept (logs, models)")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "quickstart.jsonl"))
  p.add_argument("--baseline", default="",
                 help="a git revision to run as the extra variant `baseline` (e.g. HEAD~3)")
  return p


def parse_args(argv=None):
  p = make_parser()
  args = p.parse_args(argv)
  args.names = common.variant_names(p, args.variants, VARIANTS)
  if args.baseline:
    args.names.append("baseline")
  args.work_dir = os.path.abspath(args.work_dir)
  return args


def main(argv=None):
  args = parse_args(argv)
  machine = common.machine()
  stamp = time.strftime("%Y%m%dT%H%M%S")
  command = ["bash", "scripts/quickstart.sh"]
  baseline_dir = baseline_commit = None
  if args.baseline:
    baseline_dir, baseline_commit = common.baseline_checkout(args.baseline, args.work_dir)
  for r, name in common.interleave(range(1, args.rounds + 1), args.names):
    runs_dir = os.path.join(args.work_dir, stamp, f"{name}-round{r}")
    flags = VARIANTS.get(name, [])
    env = quickstart_env(runs_dir, flags)
    before = common.sample()
    run = common.run_logged(command, runs_dir + ".log", env,
                            cwd=baseline_dir if name == "baseline" else common.REPO)
    after = common.sample()
    if run["returncode"]:
      continue
    record = dict(read_run(runs_dir, run["output"]), variant=name, round=r,
                  train_flags=flags, wall_seconds=run["seconds"], command=command,
                  env=env, log=run["log"],
                  provenance=common.provenance(machine, before, after))
    if name == "baseline":
      record["code_commit"] = baseline_commit
    common.append_record(args.out, record)
    p = record["provenance"]
    print(f"round {r} {name:<8} {record['precision']}: wall {run['seconds']:.0f} s, train "
          f"{record['train_eps'] or 0:.1f} ex/s, test F1 @ tuned threshold "
          f"{record['test_f1_tuned'] or 0:.4f}, PR-AUC {record['test_pr_auc'] or 0:.4f}"
          f"{'  LOADED' if p['loaded'] else ''}", flush=True)


if __name__ == "__main__":
  main()
