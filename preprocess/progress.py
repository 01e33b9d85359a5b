"""Progress lines for long reads: rows/s and an ETA every few seconds, nothing on small inputs.

The lines look like the trainer's (`... examples/s 11.5 ... eta 0:00:08`), on stdout:

  preprocess: train.csv 41% read, 520,000 rows, rows/s 12,939, eta 0:01:20

The ETA is for reading, validating and tokenizing the file (the fused first pass of the Beam
job, which is most of its time); sorting and writing the shards follows.
"""
import datetime
import time

EVERY_SECONDS = 5.0


def progress_line(name, rows, bytes_read, total_bytes, elapsed):
  """One progress line; without a known total (gzip input) it has no percentage or ETA.

  Args:
    name: the file's base name. rows: records read so far. bytes_read: bytes of the file read
      so far. total_bytes: the file's size, or None if unknown. elapsed: seconds since the start.
  """
  rate = f"rows/s {rows / elapsed:,.0f}" if elapsed > 0 else "rows/s -"
  if not total_bytes or not bytes_read:
    return f"preprocess: {name} {rows:,} rows read, {rate}"
  done = min(bytes_read / total_bytes, 1.0)
  eta = datetime.timedelta(seconds=round(elapsed * (1 - done) / done))
  return f"preprocess: {name} {done:.0%} read, {rows:,} rows, {rate}, eta {eta}"


class Progress:
  """Calls `say(progress_line(...))` at most once every `every` seconds, never before.

  A file read in less than `every` seconds therefore prints nothing.
  """

  def __init__(self, name, total_bytes, every=EVERY_SECONDS, clock=time.monotonic, say=None):
    self._name = name
    self._total_bytes = total_bytes
    self._every = every
    self._clock = clock
    self._say = say or (lambda line: print(line, flush=True))
    self._start = self._last = clock()

  def update(self, rows, bytes_read):
    """Reports `rows` records / `bytes_read` bytes read so far, if a line is due."""
    now = self._clock()
    if now - self._last < self._every:
      return
    self._last = now
    self._say(progress_line(self._name, rows, bytes_read, self._total_bytes, now - self._start))
