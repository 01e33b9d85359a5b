"""Writes a data dir's token ids and binary labels as one .npz per split, for non-TF readers.

  WANDB_MODE=disabled python -m benchmarks.export_split_ids --data_dir=runs/data/tweets_binary \\
      --positive_label=positive --output_dir=/tmp/tweets_ids

benchmarks/pytorch_reference.py trains on these files, so that the PyTorch reference and
`python -m trainer.task` see exactly the same token ids and labels (no second tokenization).
Each <output_dir>/<split>.npz holds (n rows, T tokens in all):
  input_ids    int32 [T]  every row's unpadded ids ([CLS] ... [SEP]), concatenated in shard order
  type_ids     int32 [T]  their segment ids
  lengths      int32 [n]  row lengths (np.split(input_ids, np.cumsum(lengths)[:-1]) = the rows)
  labels       int32 [n]  1 if the row's label is --positive_label, else 0
  example_ids  str   [n]  the records' example_id
Rows are in the manifest's shard order (sorted file names), records in file order. Files are
read and written through tf.io.gfile, so the directories may be on GCS.
"""
import argparse
import posixpath

import bertcore  # noqa: E402,F401  (before TensorFlow: selects Keras 2)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bertcore import files, schema  # noqa: E402
from trainer import input_pipeline  # noqa: E402

PARSE_BATCH = 1024   # records parsed per call (batched parsing is much faster)


def read_split(data_dir, split, manifest, positive_label=None):
  """The arrays of the module docstring for one split of data_dir (a dict of numpy arrays);
  with positive_label None, `labels` holds the label ids themselves.

  Raises schema.DataError (one line) for an unknown positive_label or a row without exactly
  one label id (a binary export needs single-label data).
  """
  positive = (None if positive_label is None
              else input_pipeline.label_index(list(manifest.labels), positive_label))
  shards = [path for path, _ in input_pipeline.split_shards(data_dir, split, manifest)]
  ds = tf.data.TFRecordDataset(shards, compression_type=manifest.compression or "")
  ids, types, lengths, labels, example_ids = [], [], [], [], []
  for serialized in ds.batch(PARSE_BATCH):
    parsed = schema.parse_examples(serialized)
    label_rows = parsed[schema.LABEL_IDS]
    if not np.all(label_rows.row_lengths().numpy() == 1):
      raise schema.DataError(f"{split}: a binary export needs exactly one label id per row")
    ids.append(parsed[schema.INPUT_IDS].flat_values.numpy())
    types.append(parsed[schema.TYPE_IDS].flat_values.numpy())
    lengths.append(parsed[schema.INPUT_IDS].row_lengths().numpy())
    label_ids = label_rows.flat_values.numpy()
    labels.append(label_ids if positive is None else label_ids == positive)
    example_ids.extend(x.decode() for x in parsed[schema.EXAMPLE_ID].numpy())
  return {"input_ids": _concat(ids), "type_ids": _concat(types), "lengths": _concat(lengths),
          "labels": _concat(labels), "example_ids": np.array(example_ids, dtype=str)}


def _concat(parts):
  return np.concatenate(parts).astype(np.int32) if parts else np.zeros([0], np.int32)


def export(data_dir, output_dir, positive_label, splits=schema.SPLITS):
  """Writes <output_dir>/<split>.npz for each split; returns {split: (rows, positives)}."""
  manifest = schema.read_manifest(data_dir)
  tf.io.gfile.makedirs(output_dir)
  counts = {}
  for split in splits:
    arrays = read_split(data_dir, split, manifest, positive_label)
    files.write_npz(posixpath.join(output_dir, f"{split}.npz"), arrays)
    counts[split] = (len(arrays["lengths"]), int(arrays["labels"].sum()))
  return counts


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--output_dir", required=True)
  p.add_argument("--positive_label", default="", help="the positive class ('' = labels[1])")
  p.add_argument("--splits", default=",".join(schema.SPLITS))
  return p


def main(argv=None):
  args = make_parser().parse_args(argv)
  try:
    counts = export(args.data_dir, args.output_dir, args.positive_label, args.splits.split(","))
  except schema.DataError as e:
    raise SystemExit(f"error: {e}") from None
  for split, (rows, positives) in counts.items():
    print(f"{split}: {rows} rows, {positives} positive -> "
          f"{posixpath.join(args.output_dir, split + '.npz')}")


if __name__ == "__main__":
  main()
