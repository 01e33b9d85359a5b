"""Training examples/s of the tweets recipe: the trainer as it was vs its new defaults, in one run.

  python benchmarks/bench_train_speed.py --data_dir=runs/data/tweets_binary \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 [--steps=80] [--rounds=2]

Each variant is a real `python -m trainer.task` run of configs/tweets_minilm.py that stops at
--steps (train.stop_at_step: no evaluation), run interleaved (A B C A B C ...) so that a change
of machine load hits every variant alike. The figure is the steady-state examples/s of the
trainer's own progress lines (the first window, which holds tracing, is left out) and the
padding efficiency they report; ratios are against `before`, per round, then the median.
  before     float32, dense AdamW update of the embedding table, Model Garden's schedule and
             epsilon, buckets 16/32/64/128 (the defaults until issue 10)
  after_f32  the new defaults on float32 (what a CPU without native bfloat16 gets)
  after      the new defaults (precision auto: bfloat16 on CPUs with AVX512_BF16 / AMX)
  eight_f32, eight   after_f32 / after with the 8 boundaries derived per example until
             2026-11-29 (16/24/.../64/128), against the 12 fitted to batch maxima now
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "before": ["precision=float32", "train.lazy_embeddings=False",
               "train.lr_schedule=polynomial_from_zero", "train.adam_epsilon=1e-6",
               "train.bucket_boundaries=16,32,64,128"],
    "after_f32": ["precision=float32"],
    "after": [],
    # The derived boundaries before they were fitted to batch maxima (8 multiples of 8).
    "eight_f32": ["precision=float32", "train.bucket_boundaries=16,24,32,40,48,56,64,128"],
    "eight": ["train.bucket_boundaries=16,24,32,40,48,56,64,128"],
}
PROGRESS = re.compile(r"^step (\d+)/\d+ .* examples/s ([\d.]+) padding efficiency ([\d.]+)")


def run_variant(name, args, work_dir):
  """(examples/s, padding efficiency) of one run, from its steady-state progress lines."""
  model_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=work_dir)
  command = [sys.executable, "-m", "trainer.task", "--config=configs/tweets_minilm.py",
             f"--config.encoder.dir={args.encoder_dir}", f"--data_dir={args.data_dir}",
             f"--model_dir={model_dir}", "--strategy=one_device",
             f"--config.train.steps_per_epoch={args.steps + 1}", "--config.train.epochs=1",
             f"--config.train.stop_at_step={args.steps}", f"--config.train.log_every_steps={args.log_every}",
             "--config.train.checkpoint_every_steps=0", "--config.export=False"]
  command += [f"--config.{o}" for o in VARIANTS[name]]
  env = dict(os.environ, WANDB_MODE="disabled")
  out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
  rates = steady_state(out)
  if rates is None:
    raise SystemExit(f"error: {name} printed no steady-state progress line; raise --steps")
  return rates


def steady_state(stdout):
  """(examples/s, padding efficiency): means over trainer.task's progress lines after the first
  (which holds tracing); None if there is no such line."""
  windows = [(float(m.group(2)), float(m.group(3)))
             for m in map(PROGRESS.match, stdout.splitlines()) if m]
  steady = windows[1:]
  if not steady:
    return None
  return statistics.mean(r for r, _ in steady), statistics.mean(e for _, e in steady)


def load():
  with open("/proc/loadavg") as f:
    return " ".join(f.read().split()[:3])


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--encoder_dir", required=True)
  p.add_argument("--steps", type=int, default=80)
  p.add_argument("--log_every", type=int, default=20)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--variants", default="before,after_f32,after")
  args = p.parse_args()
  args.data_dir, args.encoder_dir = map(os.path.abspath, (args.data_dir, args.encoder_dir))
  names = args.variants.split(",")
  results = {n: [] for n in names}
  with tempfile.TemporaryDirectory() as work_dir:
    for r in range(args.rounds):
      for name in names:
        rate, efficiency = run_variant(name, args, work_dir)
        results[name].append(rate)
        print(f"round {r + 1} {name:<10} {rate:6.1f} examples/s  padding efficiency "
              f"{efficiency:.3f}  load {load()}", flush=True)
  base = results[names[0]]
  for name in names:
    ratio = statistics.median(x / b for x, b in zip(results[name], base))
    print(f"{name:<10} median {statistics.median(results[name]):6.1f} examples/s  "
          f"x{ratio:.2f} vs {names[0]}")


if __name__ == "__main__":
  main()
