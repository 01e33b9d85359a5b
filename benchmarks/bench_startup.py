"""The trainer's fixed costs: a run of a few steps, timed end to end, this checkout vs an older one.

  python -m benchmarks.bench_startup --data_dir=runs/data/tweets_binary \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --baseline=REV [--steps=12] [--rounds=3]

Each run is `python -m trainer.task` of configs/tweets_minilm.py for --steps steps in one epoch:
imports, the shard check, building and tracing the model, the input pipelines, the validation
pass, the final test pass, the export and the W&B runs (offline) all included. With so few steps
the wall time is mostly what every run pays once, whatever its length. Variants, interleaved
(current baseline current ...) so that a change of machine speed hits both alike:
  current   this checkout
  baseline  a git worktree of --baseline (sharing this checkout's .venv; its record's
            code_commit is that revision's hash)
One JSON line per run is appended to --out (startup.jsonl): wall_seconds, the seconds of each
evaluation pass (from the run's eval_results.json: its rows / its examples/s), the command and
provenance (benchmarks/common.py).
"""
import argparse
import os
import tempfile

from benchmarks import common

VARIANTS = ("current", "baseline")


def command(args, model_dir):
  return common.trainer_command(model_dir, args.data_dir, args.encoder_dir, [
      f"train.steps_per_epoch={args.steps}", "train.epochs=1",
      f"train.log_every_steps={args.steps}"])


def pass_seconds(model_dir):
  """{split: seconds} of the run's evaluation passes, from its eval_results.json."""
  final = (common.read_json_in(model_dir, "eval_results.json") or {}).get("final") or {}
  rates = final.get("eval_examples_per_sec") or {}
  return {split: final[split]["num_examples"] / eps for split, eps in rates.items()
          if eps and split in final}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--encoder_dir", required=True)
  p.add_argument("--baseline", required=True, help="the git revision to compare with")
  p.add_argument("--steps", type=int, default=12)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--work_dir", default="/tmp/bench_startup",
                 help="the baseline's worktree is kept here")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "startup.jsonl"))
  args = p.parse_args(argv)
  if args.steps < 1:
    p.error("--steps must be at least 1")
  for name in ("data_dir", "encoder_dir", "work_dir"):
    setattr(args, name, os.path.abspath(getattr(args, name)))
  return args


def main(argv=None):
  args = parse_args(argv)
  machine = common.machine()
  os.makedirs(args.work_dir, exist_ok=True)
  baseline_dir, baseline_commit = common.baseline_checkout(args.baseline, args.work_dir)
  checkout = {"current": common.REPO, "baseline": baseline_dir}
  with tempfile.TemporaryDirectory(dir=args.work_dir) as runs:
    for r, name in common.interleave(range(1, args.rounds + 1), VARIANTS):
      model_dir = os.path.join(runs, f"{name}-round{r}")
      cmd = command(args, model_dir)
      env = {"WANDB_MODE": "offline", "WANDB_DIR": runs}   # as the main job runs it
      before = common.sample()
      run = common.run_logged(cmd, model_dir + ".log", env, cwd=checkout[name])
      after = common.sample()
      if run["returncode"]:
        continue
      record = dict(variant=name, round=r, steps=args.steps,
                    code_commit=baseline_commit if name == "baseline" else machine["commit"],
                    wall_seconds=run["seconds"], eval_seconds=pass_seconds(model_dir),
                    precision=common.precision_used(run["output"]), command=cmd, env=env,
                    provenance=common.provenance(machine, before, after))
      common.append_record(args.out, record)
      commit = (record["code_commit"] or "?")[:12]
      print(f"round {r} {name:<8} {commit}: wall {run['seconds']:.1f} s"
            f"{'  LOADED' if record['provenance']['loaded'] else ''}", flush=True)


if __name__ == "__main__":
  main()
