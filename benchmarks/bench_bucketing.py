"""Training throughput and validation F1: length bucketing vs fixed padding to max_seq_length.

  python -m benchmarks.bench_bucketing --data_dir=<tweets_binary TFRecords> \\
      --encoder_dir=<converted all-MiniLM-L6-v2> [--steps=150]

The data is the real tweets (configs/data/tweets_binary.args, short texts: ~33 tokens on
average, max_seq_length 128). Both runs use configs/tweets_minilm.py with the same seed, the
same number of steps (a fixed budget, not full epochs: fixed padding is too slow on a 2-core
CPU for full epochs) and then evaluate on the whole validation split. Without --encoder_dir
a randomly initialised encoder of MiniLM's size is used (throughput only; F1 is then noise).
Appends one JSON line per run to --out (bucketing.jsonl): steady-state training examples/s (the
first logging window, which holds tracing, is excluded), padding efficiency (real tokens /
padded tokens), validation F1 / PR-AUC, with provenance (benchmarks/common.py); `python -m
benchmarks report` renders bucketing.md.
"""
import argparse
import os
import sys
import tempfile
import time

from benchmarks import common
import bertcore  # noqa: E402,F401  (before TensorFlow)
import tensorflow as tf  # noqa: E402

from trainer import config as config_lib  # noqa: E402
from trainer import strategy as strategy_lib  # noqa: E402
from trainer import train  # noqa: E402

REPO = common.REPO


def run(padding, args, work_dir):
  overrides = {
      "train.padding": padding, "train.steps_per_epoch": args.steps, "train.epochs": 1,
      "train.checkpoint_every_steps": 0, "train.log_every_steps": args.log_every,
      "eval.test_split": False, "export": False, "wandb.mode": "disabled",
  }
  if args.throughput_only:  # stop after the steps: no evaluation (F1 is not measured)
    overrides.update({"train.steps_per_epoch": args.steps + 1, "train.stop_at_step": args.steps})
  if args.encoder_dir:
    overrides["encoder.dir"] = args.encoder_dir
  else:
    overrides.update({"encoder.kind": "random", "encoder.hidden_size": 384,
                      "encoder.num_layers": 6, "encoder.num_heads": 12,
                      "encoder.intermediate_size": 1536, "encoder.hidden_act": "gelu_exact"})
  config = config_lib.load_config_file(os.path.join(REPO, "configs", "tweets_minilm.py"),
                                       overrides)
  start = time.perf_counter()
  strategy = strategy_lib.build_strategy("one_device")
  results = train.train_and_evaluate(config, args.data_dir, os.path.join(work_dir, padding),
                                     strategy)
  final = results if args.throughput_only else results["final"]
  validation = {} if args.throughput_only else final["validation"]
  return {"train_eps": final["train_examples_per_sec"],
          "train_padding_efficiency": final["train_padding_efficiency"],
          "validation_f1": validation.get("f1"), "validation_best_f1": validation.get("best_f1"),
          "validation_pr_auc": validation.get("pr_auc"),
          "precision": strategy_lib.resolve_precision(config.precision, strategy),
          "wall_seconds": time.perf_counter() - start}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--encoder_dir", default=None)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--log_every", type=int, default=25)
  parser.add_argument("--paddings", default="bucket,fixed")
  parser.add_argument("--throughput_only", action="store_true",
                      help="train --steps steps per padding mode and stop: no evaluation")
  parser.add_argument("--out", default=os.path.join(common.RESULTS, "bucketing.jsonl"))
  args = parser.parse_args()
  work_dir = tempfile.mkdtemp(prefix="bench_bucketing_")
  machine = common.machine()
  print(f"tensorflow {tf.__version__}; {args.steps} steps of 32 per run", flush=True)
  for padding in args.paddings.split(","):
    before = common.sample()
    r = run(padding, args, work_dir)
    record = dict(r, padding=padding, steps=args.steps,
                  encoder="converted" if args.encoder_dir else "random (MiniLM sizes)",
                  command=["python", "-m", "benchmarks.bench_bucketing"] + sys.argv[1:],
                  provenance=common.provenance(machine, before, common.sample()))
    common.append_record(args.out, record)
    print(f"{padding:8s} {r['train_eps']:10.1f} examples/s  padding efficiency "
          f"{r['train_padding_efficiency']:.3f}  validation F1 {r['validation_f1']}  "
          f"best F1 {r['validation_best_f1']}  PR-AUC {r['validation_pr_auc']}  "
          f"{r['wall_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
  main()
