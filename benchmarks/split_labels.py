r"""Splits a preprocessing recipe's CSV into a labelled part and an unlabeled part (issue 40).

  python -m benchmarks.split_labels --fraction=0.25 -- @configs/data/tweets_binary.args \
      --input="$(python -m preprocess.datasets tweets)" --encoder_dir=runs/encoders/all-minilm-l6-v2 \
      --output_dir=/tmp/split        # writes /tmp/split/labelled.csv and /tmp/split/unlabeled.csv

The flags after `--` are preprocess.run's, and each row goes where that job's own ids and split
hash put it: validation and test rows, and the training rows in the first --fraction of the
training range, to labelled.csv; the other training rows to unlabeled.csv. Preprocessed with the
same flags, labelled.csv gives the whole file's validation and test splits and a --fraction of its
training split; unlabeled.csv, with --label_column= (and no --labels / --label_map), the rest of
the training rows, labels unread. Records are copied as read (rows the job would reject go to
labelled.csv, where it rejects them again); the header goes to both.
"""
import argparse
import posixpath
import sys

from bertcore import csv_source
from preprocess import rows
from preprocess import run as preprocess_run


def part_of(record, layout, s, fraction):
  """'labelled' or 'unlabeled': where preprocess.run would put the record, then the cut."""
  row = rows.convert_row(record, layout, s.row_config)
  if isinstance(row, rows.Rejection):
    return "labelled"
  split, _ = rows.assign_split(row.example_id, s.split_salt, s.train_fraction,
                               s.validation_fraction, s.num_shards)
  kept, _ = rows.assign_split(row.example_id, s.split_salt, s.train_fraction * fraction, 0.0,
                              s.num_shards)   # "train" below the cut (the same hash)
  return "unlabeled" if split == "train" and kept != "train" else "labelled"


def split_file(s, fraction):
  """Writes labelled.csv and unlabeled.csv into s.output_dir; returns their record counts."""
  if s.test_input_patterns or len(s.input_patterns) != 1 or s.columns.label is None:
    raise ValueError("give one --input, a --label_column and no --test_input")
  import tensorflow as tf   # tf.io.gfile: the output dir may be on GCS
  tf.io.gfile.makedirs(s.output_dir)
  codec = csv_source.python_codec(s.encoding).replace("utf-8-sig", "utf-8")   # no BOM added
  encode = lambda raw: raw.encode(codec, "surrogateescape")   # the bytes as read
  counts = {"labelled": 0, "unlabeled": 0}
  records = csv_source.iter_records(s.input_patterns[0], s.encoding, s.delimiter)
  header = next(records)
  layout = rows.make_layout(header.fields, s.columns, s.input_patterns[0])
  outs = {name: tf.io.gfile.GFile(posixpath.join(s.output_dir, f"{name}.csv"), "wb")
          for name in counts}
  with outs["labelled"], outs["unlabeled"]:
    for out in outs.values():
      out.write(encode(header.raw))
    for record in records:
      name = part_of(record, layout, s, fraction)
      outs[name].write(encode(record.raw))
      counts[name] += 1
  return counts


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--fraction", type=float, required=True, help="of the training rows, labelled")
  p.add_argument("preprocess_flags", nargs="+", help="preprocess.run's flags (after --)")
  args = p.parse_args(argv)
  if not 0.0 < args.fraction < 1.0:
    raise SystemExit(f"error: --fraction must be in (0, 1), got {args.fraction}")
  try:
    settings, _ = preprocess_run.parse_settings(args.preprocess_flags)
    counts = split_file(settings, args.fraction)
  except (ValueError, OSError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"{settings.output_dir}: labelled.csv {counts['labelled']:,} records, unlabeled.csv "
        f"{counts['unlabeled']:,}")


if __name__ == "__main__":
  main(sys.argv[1:])
