"""Training examples/s of the tweets recipe: the trainer as it was vs its defaults now, interleaved.

  python -m benchmarks.bench_train_speed --data_dir=runs/data/tweets_binary \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 [--steps=120] [--rounds=2]

Each variant is a real `python -m trainer.task` run of configs/tweets_minilm.py that stops at
--steps (train.stop_at_step: no evaluation), run interleaved (A B C A B C ...) so that a change
of machine load hits every variant alike. The figure is the steady-state examples/s of the
trainer's own progress lines (the first window, which holds tracing, is left out) and the
padding efficiency they report; the report's ratios are against the first variant, per round.
  before     float32, dense AdamW update of the embedding table, Model Garden's schedule and
             epsilon, buckets 16/32/64/128 (the defaults until issue 10)
  after_f32  today's defaults forced to float32 (what a CPU without native bfloat16 gets):
             lazy embedding rows, linear schedule, epsilon 1e-8, padding auto (each batch padded
             to its longest row on CPUs; before it, bucket boundaries derived from the manifest)
  after      today's defaults (precision auto: mixed bfloat16 on CPUs with native bf16)
  baseline   with --baseline=REV: after_f32's settings run from a git worktree of REV (sharing
             this checkout's .venv), for the training speed before and after a code change in
             one run; its record's code_commit is REV's hash
One JSON line per run is appended to --out (train_speed.jsonl) with the precision the run
printed, its overrides, command and provenance (benchmarks/common.py).
"""
import argparse
import os
import re
import statistics
import tempfile

from benchmarks import common

VARIANTS = {
    "before": ["precision=float32", "train.lazy_embeddings=False",
               "train.lr_schedule=polynomial_from_zero", "train.adam_epsilon=1e-6",
               "train.bucket_boundaries=16,32,64,128"],
    "after_f32": ["precision=float32"],
    "after": [],
}
PROGRESS = re.compile(r"^step (\d+)/\d+ .* examples/s ([\d.]+) padding efficiency ([\d.]+)")


def command(name, args, model_dir):
  """The trainer.task command of one run: stops at --steps, no evaluation, no export."""
  return common.trainer_command(model_dir, args.data_dir, args.encoder_dir, [
      f"train.steps_per_epoch={args.steps + 1}", "train.epochs=1",
      f"train.stop_at_step={args.steps}", f"train.log_every_steps={args.log_every}",
      "train.checkpoint_every_steps=0", "export=False"] + overrides(name))


def overrides(name):
  return VARIANTS["after_f32" if name == "baseline" else name]


def steady_state(output):
  """(examples/s, padding efficiency): means over trainer.task's progress lines after the first
  (which holds tracing); None if there is no such line. (A run stopped at stop_at_step writes no
  eval_results.json, so its progress lines are the only record of its speed.)"""
  windows = [(float(m.group(2)), float(m.group(3)))
             for m in map(PROGRESS.match, output.splitlines()) if m]
  steady = windows[1:]
  if not steady:
    return None
  return statistics.mean(r for r, _ in steady), statistics.mean(e for _, e in steady)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--encoder_dir", required=True)
  p.add_argument("--steps", type=int, default=120)
  p.add_argument("--log_every", type=int, default=20)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--variants", default="before,after_f32,after")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "train_speed.jsonl"))
  p.add_argument("--baseline", default="",
                 help="a git revision to run as the extra variant `baseline` (e.g. HEAD~3)")
  p.add_argument("--work_dir", default="/tmp/bench_train_speed",
                 help="the baseline's worktree is kept here")
  args = p.parse_args(argv)
  args.names = common.variant_names(p, args.variants, VARIANTS)
  if args.baseline:
    args.names.append("baseline")
  if args.steps <= 2 * args.log_every:
    p.error(f"--steps ({args.steps}) must exceed 2 x --log_every ({args.log_every}): "
            "the first progress window is left out")
  args.data_dir, args.encoder_dir = map(os.path.abspath, (args.data_dir, args.encoder_dir))
  return args


def main(argv=None):
  args = parse_args(argv)
  machine = common.machine()
  checkout = {name: common.REPO for name in args.names}
  baseline_commit = None
  if args.baseline:
    os.makedirs(args.work_dir, exist_ok=True)
    checkout["baseline"], baseline_commit = common.baseline_checkout(args.baseline, args.work_dir)
  with tempfile.TemporaryDirectory() as work_dir:
    for r, name in common.interleave(range(1, args.rounds + 1), args.names):
      model_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=work_dir)
      cmd = command(name, args, model_dir)
      before = common.sample()
      run = common.run_logged(cmd, model_dir + ".log", cwd=checkout[name])
      after = common.sample()
      rates = None if run["returncode"] else steady_state(run["output"])
      if rates is None:
        print(f"round {r} {name}: no steady-state progress line (see {run['log']})")
        continue
      record = dict(variant=name, round=r, steps=args.steps, overrides=overrides(name),
                    train_eps=rates[0], train_padding_efficiency=rates[1],
                    precision=common.precision_used(run["output"]), command=cmd,
                    provenance=common.provenance(machine, before, after))
      if name == "baseline":
        record["code_commit"] = baseline_commit
      common.append_record(args.out, record)
      print(f"round {r} {name:<10} {record['precision']}: {rates[0]:6.1f} examples/s  padding "
            f"efficiency {rates[1]:.3f}{'  LOADED' if record['provenance']['loaded'] else ''}",
            flush=True)


if __name__ == "__main__":
  main()
