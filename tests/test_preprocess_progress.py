"""Progress lines of the preprocessing job's read pass (fake clock: no timing is asserted)."""
from bertcore import csv_source
from preprocess import progress


def test_progress_line_has_percent_rate_and_eta():
  assert progress.progress_line("train.csv", 520_000, 40_000_000, 100_000_000, 40.0) == (
      "preprocess: train.csv 40% read, 520,000 rows, rows/s 13,000, eta 0:01:00")


def test_progress_line_without_a_total_has_rows_and_rate_only():
  assert progress.progress_line("train.csv.gz", 1_000, 5_000, None, 4.0) == (
      "preprocess: train.csv.gz 1,000 rows read, rows/s 250")


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_progress_prints_every_few_seconds_and_never_before():
  clock, lines = FakeClock(), []
  reporter = progress.Progress("in.csv", 1000, every=5.0, clock=clock, say=lines.append)
  for seconds, rows in [(1, 10), (4.9, 40), (5.0, 50), (7, 70), (10, 100)]:
    clock.now = 100.0 + seconds
    reporter.update(rows, rows * 5)
  assert lines == ["preprocess: in.csv 25% read, 50 rows, rows/s 10, eta 0:00:15",
                   "preprocess: in.csv 50% read, 100 rows, rows/s 10, eta 0:00:10"]


def test_encoded_size_counts_the_bytes_of_the_file(tmp_path):
  data = "id,text\r\n1,caf\u00e9\r\n2,\"a\nb\"\r\n".encode("utf-8")
  path = tmp_path / "in.csv"
  path.write_bytes(b"\xef\xbb\xbf" + data)  # The BOM is not part of any record.
  records = list(csv_source.iter_records(str(path), "utf-8"))
  assert csv_source.encoded_size(records, "utf-8") == len(data)
  assert csv_source.progress_size(str(path)) == len(data) + 3
  assert csv_source.progress_size(str(tmp_path / "in.csv.gz")) is None
