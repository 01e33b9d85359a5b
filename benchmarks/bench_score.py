r"""Scoring throughput and memory: trainer.predict (one process) vs the Beam job (scoring.run).

  python benchmarks/bench_score.py [--rows=50000] [--rss_rows=50000,500000] [--workers=2] \
      [--encoder_dir=runs/encoders/all-minilm-l6-v2] [--rss_model=real|tiny]

Builds an exported binary classifier from the converted MiniLM encoder with an untrained head
(throughput does not depend on the head's weights), writes a CSV of real tweets repeated to
--rows rows (`python -m preprocess.datasets tweets`, latin-1), and runs on the same CSV:
  (a) python -m trainer.predict
  (b) python -m scoring.run with DirectRunner, --direct_num_workers=--workers, multi_processing
Both are timed end to end as subprocesses (imports and model loading included) and their
predictions are compared (same ids and labels, probabilities within 1e-5). Then (b) runs at
each --rss_rows size for the peak RSS of its whole process tree (sampled every 0.2 s);
--rss_model=tiny uses a 1-layer encoder with the same vocabulary so that 500k rows take
minutes, not an hour (memory is about the pipeline's buffering, not the model's speed).
Each figure is printed with /proc/loadavg: the machine is shared. Printed, never asserted.
"""
import argparse
import csv
import glob
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from trainer import export  # noqa: E402  (sets up Keras 2 before TensorFlow)

WORK = os.environ.get("BENCH_SCORE_DIR", "/tmp/bench_score")  # scratch: exports, CSVs, outputs


def loadavg():
  with open("/proc/loadavg") as f:
    return " ".join(f.read().split()[:3])


def build_export(encoder_dir, export_dir, tiny=False):
  """An export of MiniLM (or a 1-layer encoder with its vocabulary) + an untrained head."""
  if os.path.exists(os.path.join(export_dir, export.SAVED_MODEL_PB)):
    return export_dir
  from bertcore import tokenization
  import importlib.util
  from trainer import model
  spec = importlib.util.spec_from_file_location(
      "tweets_minilm", os.path.join(REPO, "configs", "tweets_minilm.py"))
  config_module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(config_module)
  config = config_module.get_config()
  config.encoder.dir = encoder_dir
  vocab_path, lower_case = tokenization.resolve_vocab(encoder_dir=encoder_dir)
  vocab = tokenization.load_vocab(vocab_path)
  if tiny:
    config.encoder.kind = "random"
    config.encoder.hidden_size, config.encoder.num_layers = 32, 1
    config.encoder.num_heads, config.encoder.intermediate_size = 2, 64
  from bertcore import schema
  manifest = schema.Manifest(labels=["rest", "positive"], vocab_sha256=tokenization.vocab_sha256(vocab),
                             max_seq_length=128, splits={}, vocab_size=len(vocab))
  classifier, _ = model.build_classifier(config, manifest)
  encoder = tokenization.TextEncoder(vocab, lower_case, 128)
  return export.export_saved_model(classifier, encoder, ["rest", "positive"], "binary", 0.5,
                                   export_dir, vocab_path)


def write_csv(path, rows):
  """The real tweets, repeated to `rows` rows, with an id column; latin-1 like the source."""
  if os.path.exists(path):
    return path
  from preprocess import datasets
  with open(datasets.dataset_path("tweets"), encoding="latin-1", newline="") as f:
    texts = [r["text"] for r in csv.DictReader(f)]
  with open(path + ".tmp", "w", encoding="latin-1", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "text"])
    for i in range(rows):
      writer.writerow([f"t{i}", texts[i % len(texts)]])
  os.rename(path + ".tmp", path)
  return path


def _tree_rss(pid):
  """Resident bytes of a process and all its descendants."""
  total, todo = 0, [pid]
  while todo:
    p = todo.pop()
    try:
      with open(f"/proc/{p}/status") as f:
        total += next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
      for task in os.listdir(f"/proc/{p}/task"):  # children of every thread
        with open(f"/proc/{p}/task/{task}/children") as f:
          todo += [int(c) for c in f.read().split()]
    except (OSError, StopIteration):
      pass
  return total


def _children_cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def timed(command):
  """Runs a command; -> (wall seconds, CPU seconds of its process tree, peak tree RSS bytes,
  load average after). CPU time counts every waited-for descendant (Beam's worker processes)."""
  cpu = _children_cpu_seconds()
  env = dict(os.environ, PYTHONPATH=REPO, WANDB_MODE="disabled", TF_CPP_MIN_LOG_LEVEL="2")
  start = time.monotonic()
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  peak = 0
  while proc.poll() is None:
    peak = max(peak, _tree_rss(proc.pid))
    time.sleep(0.2)
  seconds = time.monotonic() - start
  output = proc.stdout.read()
  if proc.returncode:
    sys.exit(f"error: {' '.join(command[:3])} failed:\n{output[-3000:]}")
  return seconds, _children_cpu_seconds() - cpu, peak, loadavg()


def predict_command(model_dir, input_path, output_path, batch_size):
  return [sys.executable, "-m", "trainer.predict", f"--model={model_dir}", f"--input={input_path}",
          f"--output={output_path}", "--id_column=id", "--text_column=text", "--encoding=latin-1",
          f"--batch_size={batch_size}"]


def score_command(model_dir, input_path, output_dir, args):
  return [sys.executable, "-m", "scoring.run", f"--model={model_dir}", f"--input={input_path}",
          f"--output_dir={output_dir}", "--id_column=id", "--text_column=text",
          "--encoding=latin-1", f"--batch_size={args.batch_size}",
          f"--num_shards={args.num_shards}", f"--sort_rows={args.sort_rows}",
          f"--model_threads={args.model_threads}",
          f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]


def read_predictions(paths):
  out = {}
  for path in paths:
    with open(path, newline="", encoding="utf-8") as f:
      for row in list(csv.reader(f))[1:]:
        out[row[0]] = row
  return out


def compare(predict_csv, score_dir):
  a = read_predictions([predict_csv])
  b = read_predictions(sorted(glob.glob(os.path.join(score_dir, "predictions-*.csv"))))
  same_ids = sorted(a) == sorted(b)
  labels = same_ids and all(a[k][1] == b[k][1] and a[k][3] == b[k][3] for k in a)
  diff = max((abs(float(a[k][2]) - float(b[k][2])) for k in a if a[k][2]), default=0.0)
  return same_ids, labels, diff


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rows", type=int, default=50_000)
  p.add_argument("--rss_rows", default="50000,500000")
  p.add_argument("--rss_model", default="tiny", choices=("real", "tiny"))
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--batch_size", type=int, default=256, help="the Beam job's batch size")
  p.add_argument("--predict_batch_size", type=int, default=256,
                 help="trainer.predict's batch size (its default)")
  p.add_argument("--num_shards", type=int, default=8)
  p.add_argument("--model_threads", type=int, default=1, help="TF threads per Beam worker")
  p.add_argument("--sort_rows", type=int, default=2048)
  p.add_argument("--encoder_dir", default=os.path.join(REPO, "runs/encoders/all-minilm-l6-v2"))
  p.add_argument("--skip_throughput", action="store_true")
  args = p.parse_args()
  if not os.path.exists(args.encoder_dir):
    args.encoder_dir = "/work/main/runs/encoders/all-minilm-l6-v2"
  os.makedirs(WORK, exist_ok=True)
  real = build_export(args.encoder_dir, os.path.join(WORK, "export_minilm"))
  print(f"cores: {os.cpu_count()}; model: {real} (MiniLM-L6, untrained head)")

  if not args.skip_throughput:
    data = write_csv(os.path.join(WORK, f"tweets_{args.rows}.csv"), args.rows)
    pred_out = os.path.join(WORK, "predict.csv")
    t_a, cpu_a, rss_a, load_a = timed(predict_command(real, data, pred_out, args.predict_batch_size))
    score_out = os.path.join(WORK, "score_out")
    t_b, cpu_b, rss_b, load_b = timed(score_command(real, data, score_out, args))
    same_ids, labels, diff = compare(pred_out, score_out)
    for name, t, cpu, rss, load in (("(a) trainer.predict", t_a, cpu_a, rss_a, load_a),
                                     (f"(b) scoring.run, {args.workers} workers", t_b, cpu_b,
                                      rss_b, load_b)):
      print(f"{name:28s} {args.rows} rows: {t:7.1f} s wall, {args.rows / t:6.1f} rows/s, "
            f"{cpu:7.1f} CPU-s ({args.rows / cpu:5.1f} rows/CPU-s), peak RSS "
            f"{rss / 2**20:5.0f} MiB (loadavg after: {load})")
    print(f"(b)/(a): {t_a / t_b:.2f} by wall time, {cpu_a / cpu_b:.2f} by CPU time; same ids: "
          f"{same_ids}; same labels and errors: {labels}; max |probability difference|: "
          f"{diff:.2e}")

  model_dir = real if args.rss_model == "real" else build_export(
      args.encoder_dir, os.path.join(WORK, "export_tiny"), tiny=True)
  peaks = []
  for rows in [int(x) for x in args.rss_rows.split(",") if x]:
    data = write_csv(os.path.join(WORK, f"tweets_{rows}.csv"), rows)
    seconds, _, peak, load = timed(score_command(model_dir, data, os.path.join(WORK, "rss_out"),
                                              args))
    peaks.append(peak)
    print(f"scoring.run ({args.rss_model} model) {rows} rows: peak RSS {peak / 2**20:.0f} MiB "
          f"(process tree), {seconds:.1f} s, {rows / seconds:.0f} rows/s (loadavg {load})")
  if len(peaks) > 1:
    print(f"peak RSS ratio largest/smallest: {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
  main()
