"""The TFRecord schema and the data manifest: the contract between preprocessing and training.

Every record is one tf.train.Example with UNPADDED token ids; padding and bucketing are the
trainer's job. The preprocessing writer, the trainer's reader and the exported serving
signature all use the definitions below.
"""
import json
import posixpath

import tensorflow as tf

EXAMPLE_ID = "example_id"   # bytes: the row's id (or a content hash when the CSV has no id column)
INPUT_IDS = "input_ids"     # int64[length]: [CLS] a... [SEP] (b... [SEP]), truncated
TYPE_IDS = "type_ids"       # int64[length]: 0 for the first segment, 1 for the second
LENGTH = "length"           # int64: len(input_ids)
LABEL_IDS = "label_ids"     # int64[n]: indices into the manifest's `labels`; empty when unlabeled

FEATURE_SPEC = {
    EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
    INPUT_IDS: tf.io.VarLenFeature(tf.int64),
    TYPE_IDS: tf.io.VarLenFeature(tf.int64),
    LENGTH: tf.io.FixedLenFeature([], tf.int64),
    LABEL_IDS: tf.io.VarLenFeature(tf.int64),
}

MANIFEST = "manifest.json"
SPLITS = ("train", "validation", "test")


def make_example(example_id, input_ids, type_ids, label_ids):
  """Builds the tf.train.Example for one tokenized row (pure; no I/O)."""
  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Example(features=tf.train.Features(feature={
      EXAMPLE_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[example_id.encode()])),
      INPUT_IDS: ints(input_ids),
      TYPE_IDS: ints(type_ids),
      LENGTH: ints([len(input_ids)]),
      LABEL_IDS: ints(label_ids),
  }))


def parse_examples(serialized):
  """Parses a batch of serialized examples into dense-ragged tensors.

  Returns a dict with `input_ids`, `type_ids`, `label_ids` as tf.RaggedTensor [batch, (n)],
  `length` int64[batch] and `example_id` string[batch].
  """
  parsed = tf.io.parse_example(serialized, FEATURE_SPEC)
  for key in (INPUT_IDS, TYPE_IDS, LABEL_IDS):
    parsed[key] = tf.RaggedTensor.from_sparse(parsed[key])
  return parsed


def shard_pattern(data_dir, split, compression=None):
  suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
  return posixpath.join(data_dir, split, f"*{suffix}")


def shard_path(data_dir, split, index, num_shards, compression=None):
  suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
  return posixpath.join(data_dir, split, f"{split}-{index:05d}-of-{num_shards:05d}{suffix}")


class DataError(ValueError):
  """Raised when a data directory is missing, incomplete or does not fit the model."""


def write_manifest(data_dir, manifest):
  """Writes the manifest last and atomically: its presence marks a complete output."""
  path = posixpath.join(data_dir, MANIFEST)
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def read_manifest(data_dir):
  """Reads `<data_dir>/manifest.json`, refusing a directory without a complete one."""
  path = posixpath.join(data_dir, MANIFEST)
  if not tf.io.gfile.exists(path):
    raise DataError(f"{data_dir} has no {MANIFEST}: it is not the complete output of "
                    "`python -m preprocess.run` (a crashed or unfinished run leaves none)")
  try:
    with tf.io.gfile.GFile(path) as f:
      manifest = json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f"{path} is not valid JSON ({e}); re-run preprocessing") from None
  missing = [k for k in ("labels", "vocab_sha256", "max_seq_length", "splits") if k not in manifest]
  if missing:
    raise DataError(f"{path} lacks {', '.join(missing)}; re-run preprocessing")
  return manifest
