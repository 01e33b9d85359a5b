r"""Scoring throughput and memory: trainer.predict (one process) vs the Beam job (scoring.run).

The comparison of issue 12 (50k rows of real tweets, 2 cores; on an idle machine ~10-20 min):

  python benchmarks/bench_score.py --rows=50000 --rounds=1 --rss_rows=50000,500000

It writes benchmarks/results/score.md (--results) and prints the same figures. Other flags:
[--workers=2] [--batch_size=64] [--model_threads=1] [--bfloat16=auto|yes|no]
[--encoder_dir=runs/encoders/all-minilm-l6-v2] [--rss_model=real|tiny]; --rss_rows= skips the
memory runs. A quick look on a busy machine: --rows=2000 --rss_rows=.

Builds an exported binary classifier from the converted MiniLM encoder with an untrained head
(throughput does not depend on the head's weights), writes a CSV of real tweets repeated to
--rows rows (`python -m preprocess.datasets tweets`, latin-1), and runs on the same CSV, in
turn within each of --rounds rounds (interleaved, so that a change of load hits all alike):
  (a) python -m trainer.predict (its defaults: batch 256)
  (b) python -m scoring.run, DirectRunner, --direct_num_workers=--workers, multi_processing,
      --model_threads TF threads per worker, float32
  (c) (b) with --bfloat16 (by default only on a CPU with native bfloat16)
Each is timed end to end as a subprocess (imports and model loading included); (b) and (c)
are compared with (a) (same ids and labels; max |probability difference|). The padding
efficiency (real / padded tokens) of each job's batches is computed from the rows' word-piece
counts. Then (b) runs at each --rss_rows size for the peak RSS of its whole process tree
(sampled every 0.2 s); --rss_model=tiny uses a 1-layer encoder with the same vocabulary so
that 500k rows take minutes, not an hour (memory is about the pipeline's buffering).
Each figure comes with /proc/loadavg: the machine may be shared. Printed, never asserted.
"""
import argparse
import csv
import datetime
import glob
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from trainer import export  # noqa: E402  (sets up Keras 2 before TensorFlow)
from serving import export_info  # noqa: E402

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


def score_command(model_dir, input_path, output_dir, args, *extra):
  return [sys.executable, "-m", "scoring.run", f"--model={model_dir}", f"--input={input_path}",
          f"--output_dir={output_dir}", "--id_column=id", "--text_column=text",
          "--encoding=latin-1", f"--batch_size={args.batch_size}",
          f"--num_shards={args.num_shards}", f"--sort_rows={args.sort_rows}",
          f"--model_threads={args.model_threads}",
          f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing",
          *extra]


def read_predictions(paths):
  out = {}
  for path in paths:
    with open(path, newline="", encoding="utf-8") as f:
      for row in list(csv.reader(f))[1:]:
        out[row[0]] = row
  return out


def compare(predict_csv, score_dir):
  """-> (same ids, same labels and errors, max |probability difference|, labels that differ)."""
  a = read_predictions([predict_csv])
  b = read_predictions(sorted(glob.glob(os.path.join(score_dir, "predictions-*.csv"))))
  if sorted(a) != sorted(b):
    return False, False, float("nan"), None
  flips = sum(a[k][1] != b[k][1] for k in a)
  errors = all(a[k][3] == b[k][3] for k in a)
  diff = max((abs(float(a[k][2]) - float(b[k][2])) for k in a if a[k][2]), default=0.0)
  return True, errors and not flips, diff, flips


def padding_efficiency(lengths, keys, block, batch):
  """Real / padded tokens when each block of rows is sorted by `keys` and cut into batches
  padded to their longest row (what both jobs do)."""
  real = padded = 0
  for begin in range(0, len(lengths), block):
    rows = sorted(range(begin, min(begin + block, len(lengths))), key=lambda i: keys[i])
    for b in range(0, len(rows), batch):
      widths = [lengths[i] for i in rows[b:b + batch]]
      real, padded = real + sum(widths), padded + max(widths) * len(widths)
  return real / padded


def padding_figures(model_dir, data, args):
  """{job: padding efficiency} for trainer.predict's and scoring.run's batches of `data`."""
  from scoring import pipeline as pipeline_lib
  from trainer import predict
  with open(data, encoding="latin-1", newline="") as f:
    texts = [row[1] for row in list(csv.reader(f))[1:]]
  count = export_info.WordPieceCounter(model_dir)
  pieces = [n for i in range(0, len(texts), 4096) for n in count(texts[i:i + 4096])]
  lengths = [min(n, 126) + 2 for n in pieces]  # [CLS] ... [SEP], truncated to 128
  chars = [len(t) for t in texts]
  return {
      "(a) trainer.predict: chunks of "
      f"{args.predict_batch_size * predict.CHUNK_BATCHES} sorted by characters, batch "
      f"{args.predict_batch_size}": padding_efficiency(
          lengths, chars, args.predict_batch_size * predict.CHUNK_BATCHES,
          args.predict_batch_size),
      f"(b) scoring.run: blocks of {args.sort_rows} sorted by word pieces, batch "
      f"{args.batch_size}": padding_efficiency(lengths, pieces, args.sort_rows, args.batch_size),
      f"scoring.run before (blocks of {args.sort_rows} sorted by characters, batch 256)":
          padding_efficiency(lengths, chars, args.sort_rows, 256),
  }


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              epilog=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rows", type=int, default=50_000)
  p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of (a), (b), (c)")
  p.add_argument("--rss_rows", default="50000,500000", help="'' skips the memory runs")
  p.add_argument("--rss_model", default="tiny", choices=("real", "tiny"))
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--batch_size", type=int, default=64, help="the Beam job's batch size")
  p.add_argument("--predict_batch_size", type=int, default=256,
                 help="trainer.predict's batch size (its default)")
  p.add_argument("--num_shards", type=int, default=8)
  p.add_argument("--model_threads", type=int, default=1, help="TF threads per Beam worker")
  p.add_argument("--sort_rows", type=int, default=2048)
  p.add_argument("--bfloat16", default="auto", choices=("auto", "yes", "no"),
                 help="also run (c) with --bfloat16 (auto: if the CPU has native bfloat16)")
  p.add_argument("--encoder_dir", default=os.path.join(REPO, "runs/encoders/all-minilm-l6-v2"))
  p.add_argument("--results", default=os.path.join(REPO, "benchmarks/results/score.md"))
  p.add_argument("--skip_throughput", action="store_true")
  return p.parse_args()


def throughput(args, model_dir, lines):
  """Runs (a), (b), (c) interleaved; appends the table rows to `lines`."""
  from bertcore import hardware
  data = write_csv(os.path.join(WORK, f"tweets_{args.rows}.csv"), args.rows)
  bf16 = args.bfloat16 == "yes" or (args.bfloat16 == "auto" and hardware.native_bfloat16())
  jobs = [("(a) trainer.predict", "predict", None),
          (f"(b) scoring.run, {args.workers} workers, float32", "score", ())]
  if bf16:
    jobs.append((f"(c) scoring.run, {args.workers} workers, --bfloat16", "score_bf16",
                 ("--bfloat16",)))
  lines += [f"## Throughput, {args.rows:,} rows", "",
            "| round | job | wall | rows/s | CPU-s (rows/CPU-s) | peak RSS | vs (a), wall | "
            "outputs vs (a) | load average after |", "|---|---|---|---|---|---|---|---|---|"]
  for round_ in range(1, args.rounds + 1):
    wall_a = None
    for name, key, extra in jobs:
      out = os.path.join(WORK, key + (".csv" if extra is None else ""))
      command = (predict_command(model_dir, data, out, args.predict_batch_size) if extra is None
                 else score_command(model_dir, data, out, args, *extra))
      t, cpu, rss, load = timed(command)
      wall_a = t if extra is None else wall_a
      same = ""
      if extra is not None:
        ids, labels, diff, flips = compare(os.path.join(WORK, "predict.csv"), out)
        same = (f"same ids {ids}, same labels/errors {labels}"
                f"{f' ({flips} labels differ)' if flips else ''}, max Δp {diff:.1e}")
      row = (f"| {round_} | {name} | {t:.1f} s | {args.rows / t:.1f} | {cpu:.1f} "
             f"({args.rows / cpu:.1f}) | {rss / 2**20:,.0f} MiB | {wall_a / t:.2f}× | {same} | "
             f"{load} |")
      print(row, flush=True)
      lines.append(row)
  lines.append("")
  lines += ["## Padding efficiency (real / padded tokens) of each job's batches", ""]
  for name, value in padding_figures(model_dir, data, args).items():
    print(f"padding efficiency {name}: {value:.3f}")
    lines.append(f"- {name}: **{value:.3f}**")
  lines.append("")


def memory(args, lines):
  """Peak RSS of scoring.run at each --rss_rows size; appends the table to `lines`."""
  model_dir = os.path.join(WORK, "export_minilm") if args.rss_model == "real" else build_export(
      args.encoder_dir, os.path.join(WORK, "export_tiny"), tiny=True)
  lines += [f"## Peak RSS vs input size ({args.rss_model} model)", "",
            "| rows | peak RSS, process tree | wall | rows/s | load average after |",
            "|---|---|---|---|---|"]
  peaks = []
  for rows in [int(x) for x in args.rss_rows.split(",") if x]:
    data = write_csv(os.path.join(WORK, f"tweets_{rows}.csv"), rows)
    seconds, _, peak, load = timed(score_command(model_dir, data, os.path.join(WORK, "rss_out"),
                                              args))
    peaks.append(peak)
    row = (f"| {rows:,} | {peak / 2**20:,.0f} MiB | {seconds:.1f} s | {rows / seconds:.0f} | "
           f"{load} |")
    print(row, flush=True)
    lines.append(row)
  if len(peaks) > 1:
    lines += ["", f"Largest / smallest: **{peaks[-1] / peaks[0]:.2f}×** (target ≤ 1.2×)."]
  lines.append("")


def main():
  args = parse_args()
  if not os.path.exists(args.encoder_dir):
    args.encoder_dir = "/work/main/runs/encoders/all-minilm-l6-v2"
  os.makedirs(WORK, exist_ok=True)
  from bertcore import hardware
  real = build_export(args.encoder_dir, os.path.join(WORK, "export_minilm"))
  lines = ["# Scoring: trainer.predict (one process) vs the Beam job (scoring.run)", "",
           "Written by `python benchmarks/bench_score.py " + " ".join(sys.argv[1:]) + "` on "
           f"{datetime.date.today()}: {os.cpu_count()} cores, native bfloat16 "
           f"{hardware.native_bfloat16()}, load average before {loadavg()}. Model: converted "
           "all-MiniLM-L6-v2 + untrained binary head (probabilities near 0.5, so bfloat16 flips "
           "labels that a trained head would not), exported by trainer.export. Data: the "
           "bundled real tweets repeated. Wall and CPU time of the whole process tree, imports "
           "and model loading included.", ""]
  print(f"cores: {os.cpu_count()}; model: {real} (MiniLM-L6, untrained head)")
  if not args.skip_throughput:
    throughput(args, real, lines)
  if args.rss_rows:
    memory(args, lines)
  with open(args.results, "w") as f:
    f.write("\n".join(lines) + "\n")
  print(f"wrote {args.results}")


if __name__ == "__main__":
  main()
