r"""Scoring throughput and memory: serving.predict (one process) vs the Beam job (scoring.run).

  python -m benchmarks.bench_score --rows=50000 --rounds=1 --rss_rows=50000,500000

(a quick look: --rows=2000 --rss_rows=). On real tweets repeated to --rows rows and MiniLM with
an untrained head, each of --rounds rounds times in turn, end to end as subprocesses: (a)
serving.predict; (b) scoring.run, DirectRunner, --workers processes, checked against (a) (same
ids and labels, max |probability difference|); each job's padding efficiency is computed. Then
(b) runs at each --rss_rows size with a 1-layer encoder, for the peak RSS of its process tree.
One JSON line per measurement is appended to --out; `python -m benchmarks report` renders score.md.
"""
import argparse
import csv
import glob
import os
import resource
import subprocess
import sys
import time

from benchmarks import common
from trainer import export  # noqa: E402  (sets up Keras 2 before TensorFlow)
from serving import export_info  # noqa: E402

REPO = common.REPO
WORK = os.environ.get("BENCH_SCORE_DIR", "/tmp/bench_score")  # scratch: exports, CSVs, outputs
PREDICT_BATCH = 256   # serving.predict's default batch size
TINY_ENCODER = {"encoder.kind": "random", "encoder.hidden_size": 32, "encoder.num_layers": 1,
                "encoder.num_heads": 2, "encoder.intermediate_size": 64}


def build_export(encoder_dir, export_dir, tiny=False):
  """An export of MiniLM (or a 1-layer encoder with its vocabulary) + an untrained head."""
  if os.path.exists(os.path.join(export_dir, export.SAVED_MODEL_PB)):
    return export_dir
  from bertcore import schema, tokenization
  from trainer import config as config_lib, model
  config = config_lib.load_config_file(
      os.path.join(REPO, "configs", "tweets_minilm.py"),
      dict({"encoder.dir": encoder_dir}, **(TINY_ENCODER if tiny else {})))
  vocab_path, lower_case = tokenization.resolve_vocab(encoder_dir=encoder_dir)
  vocab = tokenization.load_vocab(vocab_path)
  labels = ["rest", "positive"]
  manifest = schema.Manifest(labels=labels, vocab_sha256=tokenization.vocab_sha256(vocab),
                             max_seq_length=128, splits={}, vocab_size=len(vocab))
  classifier, _ = model.build_classifier(config, manifest)
  encoder = tokenization.TextEncoder(vocab, lower_case, 128)
  return export.export_saved_model(classifier, encoder, labels, "binary", 0.5, export_dir,
                                   vocab_path)


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
    writer.writerows([f"t{i}", texts[i % len(texts)]] for i in range(rows))
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


def timed(command, machine):
  """Runs a command; -> the record fields of the run: wall and CPU seconds of its process tree,
  its peak RSS (sampled every 0.2 s), the command and the provenance."""
  cpu_seconds = lambda: sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])   # user + system
  before, cpu = common.sample(), cpu_seconds()
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
  return dict(seconds=seconds, cpu_seconds=cpu_seconds() - cpu, peak_rss_bytes=peak,
              command=command, provenance=common.provenance(machine, before, common.sample()))


def job_command(module, model_dir, input_path, output, *flags):
  """serving.predict (output: --output) or scoring.run (--output_dir) on the tweets CSV."""
  return [sys.executable, "-m", module, f"--model={model_dir}", f"--input={input_path}",
          f"--output{'_dir' if module == 'scoring.run' else ''}={output}", "--id_column=id",
          "--text_column=text", "--encoding=latin-1", *flags]


def score_flags(args):
  return [f"--batch_size={args.batch_size}", f"--num_shards={args.num_shards}",
          f"--sort_rows={args.sort_rows}", f"--model_threads={args.model_threads}",
          f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]


def read_predictions(paths):
  """{id: [id, label, probability, ..., error]} of prediction CSVs."""
  out = {}
  for path in paths:
    with open(path, newline="", encoding="utf-8") as f:
      out.update((row[0], row) for row in list(csv.reader(f))[1:])
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
  """{job: padding efficiency} of serving.predict's and scoring.run's batches of `data`, both
  sorting by word pieces as they do today (serving/predict.py, scoring/pipeline.py)."""
  from serving import predict
  with open(data, encoding="latin-1", newline="") as f:
    texts = [row[1] for row in list(csv.reader(f))[1:]]
  count = export_info.WordPieceCounter(model_dir)
  pieces = [n for i in range(0, len(texts), 4096) for n in count(texts[i:i + 4096])]
  lengths = [min(n, 126) + 2 for n in pieces]  # [CLS] ... [SEP], truncated to 128
  chunk = PREDICT_BATCH * predict.CHUNK_BATCHES
  return {
      f"(a) serving.predict: chunks of {chunk} sorted by word pieces, batch {PREDICT_BATCH}":
          padding_efficiency(lengths, pieces, chunk, PREDICT_BATCH),
      f"(b) scoring.run: blocks of {args.sort_rows} sorted by word pieces, batch "
      f"{args.batch_size}": padding_efficiency(lengths, pieces, args.sort_rows, args.batch_size),
      "file order, batch 256": padding_efficiency(lengths, [0] * len(lengths), len(lengths), 256),
  }


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rows", type=int, default=50_000)
  p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of (a), (b), (c)")
  p.add_argument("--rss_rows", default="50000,500000", help="'' skips the memory runs")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--batch_size", type=int, default=64, help="the Beam job's batch size")
  p.add_argument("--num_shards", type=int, default=8)
  p.add_argument("--model_threads", type=int, default=1, help="TF threads per Beam worker")
  p.add_argument("--sort_rows", type=int, default=2048)
  p.add_argument("--encoder_dir", default=os.path.join(REPO, "runs/encoders/all-minilm-l6-v2"))
  p.add_argument("--out", default=os.path.join(common.RESULTS, "score.jsonl"))
  return p


def throughput(args, model_dir, machine):
  """Runs (a) and (b) interleaved; one record per run, then one per padding figure."""
  data = write_csv(os.path.join(WORK, f"tweets_{args.rows}.csv"), args.rows)
  predict_csv, out = os.path.join(WORK, "predict.csv"), os.path.join(WORK, "score")
  jobs = {"(a) serving.predict": job_command("serving.predict", model_dir, data, predict_csv,
                                             f"--batch_size={PREDICT_BATCH}"),
          f"(b) scoring.run, {args.workers} workers, float32": job_command(
              "scoring.run", model_dir, data, out, *score_flags(args))}
  for round_, name in common.interleave(range(1, args.rounds + 1), list(jobs)):
    record = dict(timed(jobs[name], machine), kind="throughput", round=round_, job=name,
                  rows=args.rows, precision="float32")
    if name.startswith("(b)"):
      ids, labels, diff, flips = compare(predict_csv, out)
      record.update(same_ids=ids, same_labels_and_errors=labels, labels_differ=flips,
                    max_probability_difference=diff)
    common.append_record(args.out, record)
    print(f"round {round_} {name}: {record['seconds']:.1f} s, {record['cpu_seconds']:.1f} CPU-s, "
          f"peak RSS {record['peak_rss_bytes'] / 2**20:,.0f} MiB", flush=True)
  before = common.sample()
  for name, value in padding_figures(model_dir, data, args).items():
    print(f"padding efficiency {name}: {value:.3f}")
    common.append_record(args.out, dict(kind="padding", job=name, rows=args.rows,
                                        padding_efficiency=value,
                                        provenance=common.provenance(machine, before, before)))


def memory(args, machine):
  """Peak RSS of scoring.run at each --rss_rows size, with the tiny encoder: a record per size."""
  model_dir = build_export(args.encoder_dir, os.path.join(WORK, "export_tiny"), tiny=True)
  for rows in [int(x) for x in args.rss_rows.split(",") if x]:
    data = write_csv(os.path.join(WORK, f"tweets_{rows}.csv"), rows)
    command = job_command("scoring.run", model_dir, data, os.path.join(WORK, "rss_out"),
                          *score_flags(args))
    record = timed(command, machine)
    del record["cpu_seconds"]   # a memory record has none
    common.append_record(args.out, dict(record, kind="memory", model="tiny", rows=rows))
    print(f"{rows:,} rows: peak RSS {record['peak_rss_bytes'] / 2**20:,.0f} MiB", flush=True)


def main(argv=None):
  parser = make_parser()
  args = parser.parse_args(argv)
  if not os.path.exists(os.path.join(args.encoder_dir, "bert_config.json")):
    parser.error(f"--encoder_dir={args.encoder_dir} holds no converted encoder (bert_config.json)"
                 "; python -m trainer.convert --bundled_minilm --output_dir=<dir> writes one")
  os.makedirs(WORK, exist_ok=True)
  machine = common.machine()
  real = build_export(args.encoder_dir, os.path.join(WORK, "export_minilm"))
  throughput(args, real, machine)
  if args.rss_rows:
    memory(args, machine)
  print(f"records appended to {args.out}; python -m benchmarks report renders score.md")


if __name__ == "__main__":
  main()
