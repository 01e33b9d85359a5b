"""A copy of a CSV with a leading id column that numbers its rows in file order.

  python -m benchmarks.numbered_csv --input="$(python -m preprocess.datasets tweets)" \\
      --encoding=latin-1 --output=runs/data/tweets_numbered.csv

Ids that follow the file (t000000, t000001, ...) are what many exported tables carry: row
numbers, database keys, time-ordered exports. The demo tweets come sorted by label (negative and
neutral first, then positive), so this file is the case of a label-sorted CSV with ids in file
order, which bench_vs_pytorch trains on with `--id_column=qid` data.
"""
import argparse
import csv
import os

ID_COLUMN = "qid"


def make_parser():
  p = argparse.ArgumentParser(prog="python -m benchmarks.numbered_csv", allow_abbrev=False)
  p.add_argument("--input", required=True, help="a CSV file with a header row")
  p.add_argument("--encoding", default="utf-8")
  p.add_argument("--output", required=True, help="the numbered copy (same encoding)")
  return p


def write_numbered(source, target, encoding):
  """Copies source to target with a first column `qid` = t000000, t000001, ...; returns rows."""
  os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
  with open(source, newline="", encoding=encoding) as f_in, \
       open(target, "w", newline="", encoding=encoding) as f_out:
    reader, writer = csv.reader(f_in), csv.writer(f_out)
    header = next(reader)
    if ID_COLUMN in header:
      raise ValueError(f"{source} already has a {ID_COLUMN!r} column")
    writer.writerow([ID_COLUMN] + header)
    count = 0
    for count, row in enumerate(reader, 1):
      writer.writerow([f"t{count - 1:06d}"] + row)
  return count


def main(argv=None):
  args = make_parser().parse_args(argv)
  count = write_numbered(args.input, args.output, args.encoding)
  print(f"numbered_csv: wrote {count} rows to {args.output}")


if __name__ == "__main__":
  main()
