"""Input pipeline throughput alone (no model): examples/s out of trainer.input_pipeline.

  python benchmarks/bench_input_pipeline.py                      # synthetic tweet-length data
  python benchmarks/bench_input_pipeline.py --data_dir=<preprocessed dir> --split=train

Synthetic data: 100k records in 16 shards, lengths drawn like short texts (mean ~30 tokens,
max 128), written with bertcore.schema exactly as preprocessing writes them. Prints examples/s
for bucketed and fixed padding (the target is >= 20k examples/s on a 2-core machine).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bertcore  # noqa: E402,F401  (before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bertcore import schema  # noqa: E402
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--split", default="train")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--seconds", type=float, default=10.0)
  args = parser.parse_args()
  data_dir = args.data_dir
  if data_dir is None:
    data_dir = tempfile.mkdtemp(prefix="bench_input_")
    t = time.perf_counter()
    write_synthetic(data_dir)
    print(f"wrote 100000 synthetic records to {data_dir} in {time.perf_counter() - t:.1f} s")
  manifest = schema.read_manifest(data_dir)
  print(f"host: {os.cpu_count()} CPU cores, tensorflow {tf.__version__}")
  for padding in ("bucket", "fixed"):
    ds = input_pipeline.make_dataset(
        data_dir, args.split, args.batch_size, manifest=manifest, head="binary", training=True,
        padding=padding, bucket_boundaries=(16, 32, 64, 128), shuffle_buffer=10000)
    rate, efficiency = measure(ds, args.batch_size, args.seconds)
    print(f"padding={padding:6s} batch={args.batch_size}: {rate:10.0f} examples/s  "
          f"padding efficiency {efficiency:.3f} (real tokens / padded tokens)")


if __name__ == "__main__":
  main()
