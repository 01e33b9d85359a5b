"""Training throughput and validation F1: length bucketing vs fixed padding to max_seq_length.

  python benchmarks/bench_bucketing.py --data_dir=<tweets_binary TFRecords> \\
      --encoder_dir=<converted all-MiniLM-L6-v2> [--steps=150]

The data is the real tweets (configs/data/tweets_binary.args, short texts: ~33 tokens on
average, max_seq_length 128). Both runs use configs/tweets_minilm.py with the same seed, the
same number of steps (a fixed budget, not full epochs: fixed padding is too slow on a 2-core
CPU for full epochs) and then evaluate on the whole validation split. Without --encoder_dir
a randomly initialised encoder of MiniLM's size is used (throughput only; F1 is then noise).
Prints steady-state training examples/s (the first logging window, which holds tracing, is
excluded), padding efficiency (real tokens / padded tokens) and validation F1 / PR-AUC.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bertcore  # noqa: E402,F401  (before TensorFlow)
import tensorflow as tf  # noqa: E402

from trainer import config as config_lib  # noqa: E402
from trainer import strategy as strategy_lib  # noqa: E402
from trainer import train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  results = train.train_and_evaluate(config, args.data_dir, os.path.join(work_dir, padding),
                                     strategy_lib.build_strategy("one_device"))
  if args.throughput_only:
    return {"examples_per_sec": results["train_examples_per_sec"],
            "padding_efficiency": results["train_padding_efficiency"], "f1": float("nan"),
            "best_f1": float("nan"), "pr_auc": float("nan"),
            "wall_s": time.perf_counter() - start}
  final = results["final"]
  return {"examples_per_sec": final["train_examples_per_sec"],
          "padding_efficiency": final["train_padding_efficiency"],
          "f1": final["validation"]["f1"], "best_f1": final["validation"]["best_f1"],
          "pr_auc": final["validation"]["pr_auc"], "wall_s": time.perf_counter() - start}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--encoder_dir", default=None)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--log_every", type=int, default=25)
  parser.add_argument("--paddings", default="bucket,fixed")
  parser.add_argument("--throughput_only", action="store_true",
                      help="train --steps steps per padding mode and stop: no evaluation")
  args = parser.parse_args()
  work_dir = tempfile.mkdtemp(prefix="bench_bucketing_")
  print(f"host: {os.cpu_count()} CPU cores, tensorflow {tf.__version__}, load average "
        f"{os.getloadavg()[0]:.1f}; {args.steps} steps of 32 per run", flush=True)
  rows = {p: run(p, args, work_dir) for p in args.paddings.split(",")}
  print(f"\n{'padding':8s} {'examples/s':>10s} {'pad.eff':>8s} {'val F1@0.5':>10s} "
        f"{'val best F1':>11s} {'val PR-AUC':>10s} {'wall s':>7s}")
  for p, r in rows.items():
    print(f"{p:8s} {r['examples_per_sec']:10.1f} {r['padding_efficiency']:8.3f} {r['f1']:10.4f} "
          f"{r['best_f1']:11.4f} {r['pr_auc']:10.4f} {r['wall_s']:7.0f}")
  if {"bucket", "fixed"} <= set(rows):
    print(f"speedup bucket / fixed: "
          f"{rows['bucket']['examples_per_sec'] / rows['fixed']['examples_per_sec']:.2f}x")


if __name__ == "__main__":
  main()
