"""The main job as a new user runs it: scripts/quickstart.sh, timed end to end, per precision.

  python -m benchmarks.bench_quickstart --variants=default,float32 [--rounds=1]

Each run is `bash scripts/quickstart.sh` in a fresh RUNS directory under --work_dir (conversion,
preprocessing, training, export and predictions), interleaved A B A B ... over --rounds. Variants:
`default` (precision=auto), `float32` (TRAIN_FLAGS=--config.precision=float32: what a CPU without
native bf16 runs).
One JSON line per run (wall and step times, training rate, test metrics, precision) is appended
to --out; `python -m benchmarks report` renders quickstart.md.
"""
import argparse
import datetime
import os
import re
import time

from benchmarks import common

VARIANTS = {"default": [], "float32": ["--config.precision=float32"]}
MODEL_DIR = os.path.join("models", "tweets_minilm")   # under RUNS, as quickstart.sh


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
  return p


def main(argv=None):
  parser = make_parser()
  args = parser.parse_args(argv)
  names = common.variant_names(parser, args.variants, VARIANTS)
  args.work_dir = os.path.abspath(args.work_dir)
  machine = common.machine()
  stamp = time.strftime("%Y%m%dT%H%M%S")
  command = ["bash", "scripts/quickstart.sh"]
  for r, name in common.interleave(range(1, args.rounds + 1), names):
    runs_dir = os.path.join(args.work_dir, stamp, f"{name}-round{r}")
    flags = VARIANTS[name]   # each run: its own RUNS dir, W&B offline unless set
    env = {"RUNS": runs_dir, "TRAIN_FLAGS": " ".join(flags),
           "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    before = common.sample()
    run = common.run_logged(command, runs_dir + ".log", env, cwd=common.REPO)
    after = common.sample()
    if run["returncode"]:
      continue
    record = dict(read_run(runs_dir, run["output"]), variant=name, round=r,
                  train_flags=flags, wall_seconds=run["seconds"], command=command,
                  env=env, log=run["log"], provenance=common.provenance(machine, before, after))
    common.append_record(args.out, record)
    print(f"round {r} {name} ({record['precision']}): wall {run['seconds']:.0f} s, train "
          f"{record['train_eps']} ex/s, test F1 @ tuned threshold {record['test_f1_tuned']}"
          f"{'  LOADED' if record['provenance']['loaded'] else ''}", flush=True)


if __name__ == "__main__":
  main()
