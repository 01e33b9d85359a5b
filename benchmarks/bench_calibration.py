r"""Issue 39's targets: calibration before and after temperature scaling, on a finished run.

  python -m benchmarks.bench_calibration --model_dir=runs/models/tweets_minilm \
      [--data_dir=runs/data/tweets_binary --encoder_dir=runs/encoders/all-minilm-l6-v2 \
       --override=train.steps_per_epoch=200 --override=train.epochs=1]

With --data_dir, trains first (configs/tweets_minilm.py and the --override values). Records, per
split, before (T = 1) and after (the T fitted on validation): ECE (15 bins), Brier and NLL; the
test F1 (binary: at the threshold tuned on that side's validation; multiclass: macro F1); and the
share of test rows at or above --min_confidence with the accuracy on them.
"""
import argparse
import os
import sys

import numpy as np

from benchmarks import common


def make_parser():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model_dir", required=True, help="a finished trainer.task run (or where to "
                 "train one with --data_dir)")
  p.add_argument("--data_dir", default="", help="train first on this preprocessed data")
  p.add_argument("--encoder_dir", default=os.path.join(common.REPO, "runs", "encoders",
                                                       "all-minilm-l6-v2"))
  p.add_argument("--config", default="configs/tweets_minilm.py")
  p.add_argument("--override", action="append", default=[],
                 help="a --config.<name>=<value> of the training, as name=value (repeatable)")
  p.add_argument("--min_confidence", type=float, default=0.9,
                 help="the confidence floor whose coverage and accuracy are recorded")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "calibration.jsonl"))
  return p


def side(val_labels, val_logits, test_labels, test_logits, head, names, temperature,
         min_confidence):
  """The figures of one side (T = 1 before, the fitted T after); see the module docstring."""
  from serving import outputs   # TensorFlow: only when run
  from trainer import calibration, evaluation
  val_probs = calibration.probabilities(val_logits / temperature, head)
  test_probs = calibration.probabilities(test_logits / temperature, head)
  figures = {"validation": calibration.scores(val_labels, val_logits, head, temperature),
             "test": calibration.scores(test_labels, test_logits, head, temperature)}
  if head == "binary":
    threshold = evaluation.compute_metrics(val_labels, val_probs, head, names)["best_threshold"]
    test = evaluation.compute_metrics(test_labels, test_probs, head, names)
    figures["threshold"] = threshold
    figures["test_f1"] = common.f1_at(test, threshold)
    predicted = (test_probs.astype(np.float32) >= np.float32(threshold)).astype(np.int64)
  else:
    figures["test_f1"] = evaluation.compute_metrics(test_labels, test_probs, head,
                                                    names)["macro_f1"]
    predicted = test_probs.argmax(axis=1)
  top = np.array([outputs.top_probability(p, head) for p in test_probs])  # as --min_confidence
  kept = top >= np.float32(min_confidence)
  figures["above_floor_share"] = float(kept.mean())
  figures["above_floor_accuracy"] = (float((predicted[kept] == test_labels[kept]).mean())
                                     if kept.any() else None)
  return figures


def figures_of(model_dir, min_confidence):
  """{"head", "temperature", "before", "after"} of a finished run; SystemExit (one line) if it
  has no final evaluation or no saved logits."""
  from trainer import eval_loop   # TensorFlow: only when run
  final = (common.read_json_in(model_dir, "eval_results.json") or {}).get("final")
  config = common.read_config(model_dir)
  if not final or "test" not in final or config is None:
    raise SystemExit(f"error: {model_dir} holds no finished run with a test evaluation")
  head = config["model"]["head"]
  if head == "multilabel":
    raise SystemExit("error: the confidence floor is defined for binary and multiclass runs")
  arrays = {}
  for split in ("validation", "test"):
    labels, _ = eval_loop.read_outputs(model_dir, split)
    logits = eval_loop.read_logits(model_dir, split)
    if logits is None:
      raise SystemExit(f"error: {model_dir}/outputs/{split}.npz has no logits: a run made "
                       "before temperature scaling; train it again")
    arrays[split] = (labels, logits[:, 0] if head == "binary" else logits)
  names = final["validation"]["label_names"]
  args = (*arrays["validation"], *arrays["test"], head, names)
  temperature = final.get("temperature", 1.0)
  return {"head": head, "temperature": temperature, "label_names": names,
          "before": side(*args, 1.0, min_confidence),
          "after": side(*args, temperature, min_confidence)}


def main(argv=None):
  args = make_parser().parse_args(argv)
  if not 0.0 < args.min_confidence < 1.0:
    raise SystemExit(f"error: --min_confidence must be in (0, 1), got {args.min_confidence}")
  machine, before = common.machine(), common.sample()
  command, train_seconds = None, None
  if args.data_dir:
    command = common.trainer_command(args.model_dir, args.data_dir, args.encoder_dir,
                                     args.override, config=args.config)
    run = common.run_logged(command, args.model_dir.rstrip("/") + ".log")
    if run["returncode"]:
      raise SystemExit(f"error: training failed (exit {run['returncode']}): see {run['log']}")
    train_seconds = run["seconds"]
  figures = figures_of(args.model_dir, args.min_confidence)
  after = common.sample()
  manifest = common.read_manifest(args.data_dir) if args.data_dir else None
  record = {
      "benchmark": "calibration", "model_dir": args.model_dir, "data_dir": args.data_dir or None,
      "data_rows": {s: v["rows"] for s, v in manifest["splits"].items()} if manifest else None,
      "min_confidence": args.min_confidence, **figures, "config": common.read_config(args.model_dir),
      "train_command": command, "train_seconds": train_seconds,
      "command": [sys.executable, "-m", "benchmarks.bench_calibration"] + list(
          sys.argv[1:] if argv is None else argv),
      "provenance": common.provenance(machine, before, after),
  }
  common.append_record(args.out, record)
  print(f"T={figures['temperature']:.3g}: test ECE {figures['before']['test']['ece']:.4f} -> "
        f"{figures['after']['test']['ece']:.4f}; record appended to {args.out}", flush=True)


if __name__ == "__main__":
  main()
