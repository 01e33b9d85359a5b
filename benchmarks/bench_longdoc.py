r"""Issue 38's targets: truncating long documents at 512 against reading them in windows.

  python -m benchmarks.bench_longdoc --chunked_dir=runs/data/newsgroups \
      --head_dir=runs/data/newsgroups_head512 --head_tail_dir=runs/data/newsgroups_headtail512 \
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --seeds=1,2,3 --steps=100

The three data dirs are 20 Newsgroups preprocessed by configs/data/newsgroups.args (chunked) and
with --max_chunks=0 --max_seq_length=512 (--truncation=head / head_tail). Every row trains
configs/newsgroups_minilm.py for the same --steps of 16 documents, with the same seeds and
learning-rate recipe, on the same training documents. Validation and test are the same fixed
samples of --eval_docs documents in every row (by a hash of the id: a full evaluation of 7,521
posts per run did not fit a session); the posts over 512 word pieces are a sample of --long_docs
of the test posts over 512 (the same in every row), scored through each run's own export
(serve_examples on its own data dir's records).
TF-IDF + logistic regression (benchmarks/tfidf_baseline.py) trains on the whole training split.
"""
import argparse
import hashlib
import os
import sys
import time

import numpy as np

from benchmarks import common

ROWS = {  # name -> (data dir flag, trainer overrides)
    "head_512": ("head_dir", ["model.chunk_pooling="]),
    "head_tail_512": ("head_tail_dir", ["model.chunk_pooling="]),
    **{f"chunk_{n}_{p}": ("chunked_dir", [f"model.chunk_pooling={p}", f"model.chunk_length={n}"])
       for n in (256, 128) for p in ("mean", "max", "attention")},
}
LONG = 512  # word pieces


def make_parser():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  for flag in ("chunked_dir", "head_dir", "head_tail_dir"):
    p.add_argument(f"--{flag}", required=True)
  p.add_argument("--encoder_dir", default=os.path.join(common.REPO, "runs", "encoders",
                                                       "all-minilm-l6-v2"))
  p.add_argument("--rows", default="head_512,head_tail_512,chunk_256_mean,chunk_128_mean,tfidf")
  p.add_argument("--seeds", default="1,2,3")
  p.add_argument("--steps", type=int, default=120, help="training steps of 16 documents")
  p.add_argument("--eval_docs", type=int, default=500, help="validation / test documents")
  p.add_argument("--long_docs", type=int, default=400, help="test documents over 512 pieces")
  p.add_argument("--work_dir", default=os.path.join(common.REPO, "runs", "bench_longdoc"))
  p.add_argument("--out", default=os.path.join(common.RESULTS, "longdoc.jsonl"))
  return p


def _hash(example_id):
  return hashlib.sha1(b"bench_longdoc:" + example_id).hexdigest()


def read_split(data_dir, split):
  """{example_id: (serialized record, input ids count, label id)} of a data dir's split."""
  import tensorflow as tf   # only when run
  from bertcore import schema
  out = {}
  for path in sorted(tf.io.gfile.glob(schema.shard_pattern(data_dir, split))):
    for record in tf.data.TFRecordDataset(path):
      parsed = tf.io.parse_single_example(record, schema.FEATURE_SPEC)
      out[parsed[schema.EXAMPLE_ID].numpy()] = (
          record.numpy(), int(parsed[schema.LENGTH]),
          int(tf.sparse.to_dense(parsed[schema.LABEL_IDS])[0]))
  return out


def sample_dir(data_dir, out_dir, eval_docs):
  """data_dir with its validation and test splits cut to eval_docs documents (the same ids in
  every data dir of the same CSV rows); the train split is the original's shards."""
  import tensorflow as tf   # only when run
  from bertcore import schema
  manifest = schema.read_manifest(data_dir)
  splits = dict(manifest.splits)
  for split in ("validation", "test"):
    records = read_split(data_dir, split)
    keep = sorted(records, key=_hash)[:eval_docs]
    name = f"{split}-00000-of-00001.tfrecord"
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(out_dir, split, name)) as writer:
      for example_id in keep:
        writer.write(records[example_id][0])
    hist = {label: 0 for label in manifest.labels}
    for example_id in keep:
      hist[manifest.labels[records[example_id][2]]] += 1
    splits[split] = schema.SplitInfo(rows=len(keep), shards={name: len(keep)},
                                     label_histogram=hist)
  if not os.path.exists(os.path.join(out_dir, "train")):
    os.symlink(os.path.join(os.path.abspath(data_dir), "train"), os.path.join(out_dir, "train"))
  import dataclasses
  schema.write_manifest(out_dir, dataclasses.replace(manifest, splits=splits))
  return out_dir


def export_scores(export_dir, records, batch=16):
  """Predicted label ids of records through an export's serve_examples, and documents/s."""
  import tensorflow as tf   # only when run
  import tensorflow_text  # noqa: F401  (the export's tokenizer ops)
  serve = tf.saved_model.load(export_dir).signatures["serve_examples"]
  start, predicted = time.perf_counter(), []
  for i in range(0, len(records), batch):
    out = serve(examples=tf.constant(records[i:i + batch]))
    predicted += out["label_id"].numpy().tolist()
  return np.array(predicted), len(records) / (time.perf_counter() - start)


def scores(labels, predicted, names):
  from trainer import evaluation   # TensorFlow: only when run
  m = evaluation.compute_metrics(np.array(labels), np.eye(len(names))[predicted], "multiclass",
                                 names)
  return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "docs": len(labels)}


def tfidf_figures(args, long_ids, test_ids):
  """TF-IDF + logistic regression on the recipe's rows, scored on the same test documents."""
  from benchmarks import tfidf_baseline
  from preprocess import datasets
  argv = [f"@{os.path.join(common.REPO, 'configs', 'data', 'newsgroups.args')}",
          f"--input={datasets.dataset_path('newsgroups-train')}",
          f"--test_input={datasets.dataset_path('newsgroups-test')}", "--vocab_file=unused"]
  dataset = tfidf_baseline.load_dataset(argv)
  result = tfidf_baseline.run_baseline(dataset, "multiclass")
  labels, probs = result["test_outputs"]
  index = {i.encode(): k for k, i in enumerate(dataset.splits["test"].ids)}
  figures = {}
  for name, ids in (("test", test_ids), ("long", long_ids)):
    rows = [index[i] for i in ids if i in index]
    figures[name] = scores(labels[rows], probs[rows].argmax(axis=1), result["label_names"])
  return dict(figures, seconds=result["seconds"], command=argv)


def run_row(args, name, seed, data_dir, long_records, long_labels, names):
  key, overrides = ROWS[name]
  model_dir = os.path.join(args.work_dir, f"{name}-seed{seed}")
  overrides = overrides + [f"train.seed={seed}", f"train.steps_per_epoch={args.steps}",
                           "train.epochs=1", "train.checkpoint_every_steps=0"]
  command = common.trainer_command(model_dir, data_dir, args.encoder_dir, overrides,
                                   config="configs/newsgroups_minilm.py")
  run = common.run_logged(command, model_dir + ".log")
  final = (common.read_json_in(model_dir, "eval_results.json") or {}).get("final")
  if run["returncode"] or not final:
    raise SystemExit(f"error: {name} seed {seed} failed: see {run['log']}")
  predicted, long_dps = export_scores(os.path.join(model_dir, "export"), long_records)
  return {"row": name, "seed": seed, "data_dir": data_dir, "command": command,
          "train_seconds": run["seconds"], "precision": common.precision_used(run["output"]),
          "train_eps": final.get("train_examples_per_sec"),
          "eval_dps": final["eval_examples_per_sec"].get("test"), "long_dps": long_dps,
          "test": {k: final["test"][k] for k in ("macro_f1", "accuracy", "num_examples")},
          "long": scores(long_labels, predicted, names),
          "config": common.read_config(model_dir)}


def main(argv=None):
  args = make_parser().parse_args(argv)
  rows = common.variant_names(make_parser(), args.rows, list(ROWS) + ["tfidf"])
  seeds = [int(s) for s in args.seeds.split(",")]
  machine = common.machine()
  dirs = {key: sample_dir(getattr(args, key), os.path.join(args.work_dir, "data", key),
                          args.eval_docs) for key in ("chunked_dir", "head_dir", "head_tail_dir")}
  chunked_test = read_split(args.chunked_dir, "test")
  long_ids = sorted((i for i, (_, n, _) in chunked_test.items() if n - 2 > LONG),
                    key=_hash)[:args.long_docs]
  test_ids = sorted(chunked_test, key=_hash)[:args.eval_docs]
  names = common.read_manifest(args.chunked_dir)["labels"]
  full = {key: read_split(getattr(args, key), "test") for key in dirs}
  base = {"benchmark": "longdoc", "steps": args.steps, "batch": 16, "eval_docs": args.eval_docs,
          "long_docs": len(long_ids),
          "train_docs": common.read_manifest(args.chunked_dir)["splits"]["train"]["rows"],
          "argv": sys.argv[1:] if argv is None else list(argv)}
  for seed, name in common.interleave(seeds, [r for r in rows if r != "tfidf"]):
    before = common.sample()
    key = ROWS[name][0]
    records = [full[key][i][0] for i in long_ids]
    labels = [full[key][i][2] for i in long_ids]
    figures = run_row(args, name, seed, dirs[key], records, labels, names)
    record = dict(base, **figures, provenance=common.provenance(machine, before, common.sample()))
    common.append_record(args.out, record)
    print(f"{name} seed {seed}: test macro-F1 {figures['test']['macro_f1']:.4f}, over {LONG} "
          f"{figures['long']['macro_f1']:.4f}", flush=True)
  if "tfidf" in rows:
    before = common.sample()
    figures = tfidf_figures(args, long_ids, test_ids)
    common.append_record(args.out, dict(base, row="tfidf", seed=None, **figures,
                                        provenance=common.provenance(machine, before,
                                                                     common.sample())))
    print(f"tfidf: test macro-F1 {figures['test']['macro_f1']:.4f}", flush=True)


if __name__ == "__main__":
  main()
