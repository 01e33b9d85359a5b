"""A copy of a CSV with a leading id column that numbers its rows in file order.

  python -m benchmarks.numbered_csv --input="$(python -m preprocess.datasets tweets)" \\
      --encoding=latin-1 --output=runs/data/tweets_numbered.csv

The demo tweets come sorted by label, so the copy is a label-sorted CSV whose ids follow the file
(as row numbers or database keys do): bench_vs_pytorch's data for issue 36's shard order.
"""
import argparse
import csv
import os


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
    writer.writerow(["qid"] + next(reader))
    rows = [[f"t{i:06d}"] + row for i, row in enumerate(reader)]
    writer.writerows(rows)
  return len(rows)


if __name__ == "__main__":
  args = make_parser().parse_args()
  print(f"numbered_csv: wrote {write_numbered(args.input, args.output, args.encoding)} rows to "
        f"{args.output}")
