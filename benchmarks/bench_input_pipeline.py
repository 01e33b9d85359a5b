"""Input pipeline throughput alone (no model): examples/s out of trainer.input_pipeline.

  python -m benchmarks.bench_input_pipeline                      # synthetic tweet-length data
  python -m benchmarks.bench_input_pipeline --data_dir=<preprocessed dir> --split=train

Synthetic data: 100k records in 16 shards, lengths drawn like short texts (mean ~30 tokens,
max 128), written with bertcore.schema exactly as preprocessing writes them. Appends one JSON
line per pipeline (each batch padded to its longest row, as padding=auto on CPUs; bucketed;
fixed padding; and the per-example textbook bucketing) to --out
(input_pipeline.jsonl): examples/s and padding efficiency, with provenance
(benchmarks/common.py); `python -m benchmarks report` renders input_pipeline.md.
"""
import argparse
import os
import sys
import tempfile
import time

from benchmarks import common
import bertcore  # noqa: E402,F401  (before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bertcore import schema  # noqa: E402
from trainer import config as config_lib  # noqa: E402
from trainer import input_pipeline  # noqa: E402


def write_synthetic(data_dir, rows=100_000, shards=16, seed=0):
  rng = np.random.RandomState(seed)
  lengths = np.clip(rng.lognormal(3.3, 0.5, size=rows).astype(int), 3, 128)
  split_rows = {"train": [], "validation": [], "test": []}
  counts = {"train": {}, "validation": {}, "test": {}}
  for split in split_rows:
    tf.io.gfile.makedirs(os.path.join(data_dir, split))
  writers = [tf.io.TFRecordWriter(schema.shard_path(data_dir, "train", s, shards))
             for s in range(shards)]
  for i, n in enumerate(lengths):
    ids = [2] + list(rng.randint(5, 30000, size=n - 2)) + [3]
    writers[i % shards].write(schema.make_example(
        f"r{i}", ids, [0] * n, [int(rng.randint(2))]).SerializeToString())
  for w in writers:
    w.close()
  for s in range(shards):
    counts["train"][os.path.basename(schema.shard_path(data_dir, "train", s, shards))] = (
        len(range(s, rows, shards)))
  manifest = {"labels": ["0", "1"], "vocab_sha256": "x", "vocab_size": 30522,
              "lower_case": True, "max_seq_length": 128, "compression": None,
              "num_shards": shards, "splits": {
                  split: {"rows": sum(c.values()), "shards": c} for split, c in counts.items()}}
  schema.write_manifest(data_dir, manifest)
  return manifest


def measure(ds, global_batch, seconds=10.0, warmup_batches=20, efficiency_batches=300):
  """(examples/s of the bare iterator, padding efficiency over some batches)."""
  it = iter(ds)
  for _ in range(warmup_batches):
    next(it)
  n, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(it)
    n += global_batch
  rate = n / (time.perf_counter() - start)
  real = padded = 0
  for _ in range(efficiency_batches):  # outside the timed loop: eager ops are slow per batch
    mask = next(it)["input_mask"].numpy()
    real += int(mask.sum())
    padded += mask.size
  return rate, real / padded


def per_example_bucketing(data_dir, manifest, batch_size, boundaries=(16, 32, 64, 128)):
  """The textbook alternative, for comparison: parse each record, then
  Dataset.bucket_by_sequence_length (per-example group_by_window)."""
  files = [f for f, _ in input_pipeline.split_shards(data_dir, "train", manifest)]

  def parse(serialized):
    x = tf.io.parse_single_example(serialized, schema.FEATURE_SPEC)
    ids = tf.cast(tf.sparse.to_dense(x[schema.INPUT_IDS]), tf.int32)
    return {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
            "input_type_ids": tf.cast(tf.sparse.to_dense(x[schema.TYPE_IDS]), tf.int32),
            "labels": tf.cast(tf.sparse.to_dense(x[schema.LABEL_IDS])[:1], tf.float32)}
  ds = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.shuffle(10000).repeat().map(parse, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.bucket_by_sequence_length(
      lambda x: tf.shape(x["input_word_ids"])[0], [b + 1 for b in boundaries],
      [batch_size] * (len(boundaries) + 1), pad_to_bucket_boundary=True, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--split", default="train")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--out", default=os.path.join(common.RESULTS, "input_pipeline.jsonl"))
  args = parser.parse_args()
  machine = common.machine()
  data_dir = args.data_dir
  if data_dir is None:
    data_dir = tempfile.mkdtemp(prefix="bench_input_")
    write_synthetic(data_dir)
  data = f"{args.data_dir}, {args.split}" if args.data_dir else "synthetic tweet-length records"
  manifest = schema.read_manifest(data_dir)
  pipelines = {}
  for padding in ("longest", "bucket", "fixed"):   # longest: the CPU default (padding=auto)
    config = config_lib.default_config()
    config.train.update(global_batch_size=args.batch_size, padding=padding,
                        bucket_boundaries=(16, 32, 64, 128), shuffle_buffer=10000)
    pipelines[f"train_batches, padding={padding}"] = input_pipeline.train_batches(
        input_pipeline.source(data_dir, args.split, manifest, "binary"), config.train,
        config.data)
  pipelines["per-example parse + bucket_by_sequence_length"] = per_example_bucketing(
      data_dir, manifest, args.batch_size)
  for name, ds in pipelines.items():
    before = common.sample()
    rate, efficiency = measure(ds, args.batch_size, args.seconds)
    common.append_record(args.out, dict(
        data=data, pipeline=name, batch_size=args.batch_size, seconds=args.seconds,
        examples_per_sec=rate, padding_efficiency=efficiency, tf=tf.__version__,
        command=["python", "-m", "benchmarks.bench_input_pipeline"] + sys.argv[1:],
        provenance=common.provenance(machine, before, common.sample())))
    print(f"{name}: {rate:10.0f} examples/s  padding efficiency {efficiency:.3f} "
          "(real tokens / padded tokens)", flush=True)


if __name__ == "__main__":
  main()
