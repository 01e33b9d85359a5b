"""Batch inference on an unlabeled CSV with an exported model (trainer.export).

  python -m trainer.predict --model=<export dir> --input=test.csv --output=predictions.csv \\
      [--id_column=qid --text_column=question_text --text_pair_column= --batch_size=256 \\
       --encoding=utf-8 --delimiter=, --unescape_html]

--delimiter=tab reads TSV. --unescape_html decodes HTML character references (`&#039;`) in the
texts before the model sees them; the export cannot do that in-graph, so by default it follows
the training data (the export's metadata records preprocessing's --unescape_html).

The output has one row per input row, in input order:
  <id_column>   the row's id (or `row`, the 1-based data row number, with --id_column=)
  label         the predicted class name (multilabel: names joined with "|")
  probability   binary: P(label 1); multiclass / multilabel: one `probability_<label>` column
                per label instead
  error         empty, or why the row got no prediction: missing_field (the row has fewer
                fields than the header), extra_fields (more fields: usually an unquoted comma),
                empty_text, empty_text_pair. Such rows keep their id and have empty
                label / probability cells; they are counted in the summary, never dropped.
Blank lines are not rows; they are skipped and counted.

Input and output go through tf.io.gfile (gs:// works); the output is written to a temporary
name and renamed when complete. Rows are read in chunks and sorted by word pieces (the export's
tokenizer) within a chunk before batching, so that a batch pads to similar lengths; results are
written in input order.
"""
import codecs
import contextlib
import csv
import html
import io
import posixpath
import sys
import time
import uuid

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

from bertcore import cli
from trainer import export

CHUNK_BATCHES = 16  # Rows sorted by length together: batch_size * CHUNK_BATCHES.
PROGRESS_SECONDS = 10.0
ROW_NUMBER_COLUMN = "row"


class _GFileRaw(io.RawIOBase):
  """A tf.io.gfile.GFile as a raw binary stream, so that io.TextIOWrapper can decode any
  encoding (GFile's own text mode is UTF-8 only). Counts the bytes read, for progress."""

  def __init__(self, gfile):
    super().__init__()
    self._gfile = gfile
    self.bytes_read = 0

  def readable(self):
    return True

  def readinto(self, buffer):
    data = self._gfile.read(len(buffer))
    buffer[:len(data)] = data
    self.bytes_read += len(data)
    return len(data)

  def close(self):
    self._gfile.close()
    super().close()


def _text_encoding(encoding):
  try:
    name = codecs.lookup(encoding).name
  except LookupError:
    raise ValueError(f"unknown encoding {encoding!r}") from None
  # utf-8-sig drops a byte-order mark (Excel writes one) and is otherwise utf-8.
  return "utf-8-sig" if name == "utf-8" else encoding


def column_index(header, column, input_path, hint=""):
  """The position of `column` in the header; ValueError (one line, naming the columns) if absent."""
  if column not in header:
    raise ValueError(f"column {column!r} is not in {input_path} (its columns: "
                     f"{', '.join(repr(c) for c in header)}){hint}")
  return header.index(column)


def format_probability(p):
  """A probability as an output cell: 7 significant digits."""
  return format(float(p), ".7g")


def output_columns(metadata, id_column):
  """The output's columns for an export's metadata: id (or `row`), label, probabilities, error."""
  if metadata["head"] == "binary":
    probabilities = ["probability"]
  else:
    probabilities = [f"probability_{name}" for name in metadata["labels"]]
  return [id_column or ROW_NUMBER_COLUMN, "label"] + probabilities + ["error"]


def predict_csv(model_dir, input_path, output_path, id_column="qid",
                text_column="question_text", text_pair_column=None, batch_size=256,
                encoding="utf-8", log=print, delimiter=",", unescape_html=None):
  """Predicts every row of a CSV and writes predictions.csv (see the module docstring).

  Args:
    model_dir: a directory written by trainer.export.export_saved_model.
    input_path: the CSV, with a header row.
    output_path: the predictions CSV (UTF-8); replaced if it exists.
    id_column: the id column copied to the output; None or "" numbers the rows instead.
    text_column, text_pair_column: the text (and optional second text) columns.
    batch_size: rows per model call.
    encoding: the input's text encoding (a UTF-8 byte-order mark is skipped).
    log: receives the progress lines.
    delimiter: the field separator (one character; "\t" for TSV).
    unescape_html: html.unescape the texts first; None: as the training data was (the
      export's metadata).
  Returns:
    A summary dict: rows, predicted, bad_rows {reason: count}, bad_rows_total, blank_lines,
    seconds, rows_per_second, output, columns.
  Raises:
    ValueError with a one-line message for a missing model, input or column, or bad flags.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  metadata = export.read_metadata(model_dir)
  if not tf.io.gfile.exists(input_path):
    raise ValueError(f"input file {input_path} does not exist")
  text_encoding = _text_encoding(encoding)
  unescape_html = unescape_html_default(metadata, unescape_html)
  raw = _GFileRaw(tf.io.gfile.GFile(input_path, "rb"))
  stats = {"rows": 0, "predicted": 0, "blank_lines": 0, "bad_rows": {}}
  with io.TextIOWrapper(io.BufferedReader(raw), encoding=text_encoding,
                        newline="") as reader_file:
    reader = csv.reader(reader_file, delimiter=delimiter)
    # The header first: a wrong column fails before the model is loaded.
    header = _read_header(reader, input_path, encoding)
    indices = _input_indices(header, input_path, id_column, text_column, text_pair_column)
    columns = output_columns(metadata, id_column)
    num_probabilities = len(columns) - 3  # All but id, label and error.
    loaded = tf.saved_model.load(model_dir)
    signature = loaded.signatures["serve_text_pair" if text_pair_column else "serving_default"]
    count_pieces = export.WordPieceCounter(model_dir)
    progress = _Progress(raw, tf.io.gfile.stat(input_path).length, log)
    with _complete_output(output_path) as out:
      out.write(_csv_lines([columns]))
      rows = (parse_row(row, stats["rows"], header, *indices, unescape_html=unescape_html)
              for row in _rows(reader, input_path, encoding, stats))
      for chunk in _chunks(rows, batch_size * CHUNK_BATCHES):
        out.write(_predict_chunk(signature, count_pieces, chunk, batch_size, num_probabilities,
                                 stats))
        progress.report(stats["rows"])
  summary = _summary(stats, progress.seconds(), output_path, columns)
  log(_summary_line(summary))
  return summary


def unescape_html_default(metadata, unescape_html):
  """The --unescape_html to use: the flag's if given, else the training data's (the export's
  metadata.json `input.unescape_html`; False for exports that do not record it)."""
  if unescape_html is not None:
    return unescape_html
  return bool((metadata.get("input") or {}).get("unescape_html", False))


def _input_indices(header, input_path, id_column, text_column, text_pair_column):
  """-> (id, text, text_pair) positions in the header, None for an absent id or pair column."""
  text_index = column_index(header, text_column, input_path)
  pair_index = column_index(header, text_pair_column, input_path) if text_pair_column else None
  id_index = (column_index(header, id_column, input_path,
                           "; pass --id_column= to number the rows instead")
              if id_column else None)
  return id_index, text_index, pair_index


class _Progress:
  """Logs rows/s and the share of the input read, at most every PROGRESS_SECONDS."""

  def __init__(self, raw, input_size, log):
    self._raw, self._input_size, self._log = raw, input_size, log
    self._start = self._last = time.monotonic()

  def report(self, rows):
    now = time.monotonic()
    if now - self._last >= PROGRESS_SECONDS:
      self._last = now
      done = 100 * self._raw.bytes_read / max(self._input_size, 1)
      self._log(f"predict: {rows} rows (~{done:.0f}% of the input), "
                f"{rows / (now - self._start):.0f} rows/s")

  def seconds(self):
    return time.monotonic() - self._start


@contextlib.contextmanager
def _complete_output(output_path):
  """Yields a text file under a temporary name; renamed to output_path only on success.

  On any error the temporary file is removed, so output_path is never a partial output.
  """
  tmp_path = f"{output_path}.tmp-{uuid.uuid4().hex[:12]}"
  try:
    parent = posixpath.dirname(output_path)
    if parent:
      tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(tmp_path, "w") as out:
      yield out
    tf.io.gfile.rename(tmp_path, output_path, overwrite=True)  # complete: make it visible
  except BaseException:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)
    raise


def _chunks(items, size):
  """Lists of `size` consecutive items (the last one shorter), from any iterable."""
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _summary(stats, seconds, output_path, columns):
  """The summary dict that predict_csv returns (see there), from the run's counts."""
  return {
      "rows": stats["rows"], "predicted": stats["predicted"],
      "bad_rows": dict(sorted(stats["bad_rows"].items())),
      "bad_rows_total": sum(stats["bad_rows"].values()),
      "blank_lines": stats["blank_lines"], "seconds": round(seconds, 3),
      "rows_per_second": round(stats["rows"] / seconds, 1) if seconds > 0 else None,
      "output": output_path, "columns": columns,
  }


def _summary_line(summary):
  """The final log line: counts, reasons for rows without prediction, speed, output."""
  bad = ", ".join(f"{k} {v}" for k, v in summary["bad_rows"].items())
  return (f"predict: done: {summary['rows']} rows, {summary['predicted']} predicted, "
          f"{summary['bad_rows_total']} without prediction{f' ({bad})' if bad else ''}, "
          f"{summary['blank_lines']} blank lines skipped; {summary['seconds']:.1f} s, "
          f"{summary['rows_per_second']} rows/s -> {summary['output']}")


def _decode_error(input_path, encoding, row_number):
  return ValueError(f"{input_path} is not valid {encoding} (near data row {row_number}); "
                    "pass the right --encoding, e.g. latin-1")


def _read_header(reader, input_path, encoding):
  try:
    header = next(reader, None)
  except UnicodeDecodeError:
    raise _decode_error(input_path, encoding, 0) from None
  except csv.Error as e:
    raise ValueError(f"{input_path}: bad CSV header ({e})") from None
  if not header:
    raise ValueError(f"{input_path} is empty: expected a header row")
  return header


def _rows(reader, input_path, encoding, stats):
  """The non-blank rows of the CSV; decode and CSV errors become one-line ValueErrors."""
  while True:
    try:
      row = next(reader)
    except StopIteration:
      return
    except UnicodeDecodeError:
      raise _decode_error(input_path, encoding, stats["rows"] + 1) from None
    except csv.Error as e:
      raise ValueError(f"{input_path}: unreadable CSV near data row {stats['rows'] + 1} "
                       f"({e})") from None
    if not row:
      stats["blank_lines"] += 1
      continue
    stats["rows"] += 1
    yield row


def parse_row(row, row_number, header, id_index, text_index, pair_index, unescape_html=False):
  """-> (id, text, text_pair, problem): problem is None or the reason for no prediction."""
  def field(index):
    return row[index] if index is not None and index < len(row) else ""
  row_id = field(id_index) if id_index is not None else str(row_number)
  text, pair = field(text_index), field(pair_index)
  if unescape_html:  # As preprocessing's --unescape_html, before the empty checks.
    text, pair = html.unescape(text), html.unescape(pair)
  needed = [i for i in (id_index, text_index, pair_index) if i is not None]
  if len(row) < len(header) and max(needed) >= len(row):
    problem = "missing_field"
  elif len(row) > len(header):
    problem = "extra_fields"
  elif not text.strip():
    problem = "empty_text"
  elif pair_index is not None and not pair.strip():
    problem = "empty_text_pair"
  else:
    problem = None
  return row_id, text, pair, problem


def _predict_chunk(signature, count_pieces, chunk, batch_size, num_probabilities, stats):
  """Predicts the good rows of a chunk; returns the chunk's output lines in input order."""
  good = [i for i, (_, _, _, problem) in enumerate(chunk) if problem is None]
  with_pair = "text_pair" in signature.structured_input_signature[1]
  # Similar lengths in a batch: the export pads each batch to its longest row.
  if good:
    pieces = count_pieces([chunk[i][1] for i in good],
                          [chunk[i][2] for i in good] if with_pair else None)
    good = [i for _, i in sorted(zip(pieces, good))]
  lines = [None] * len(chunk)
  for begin in range(0, len(good), batch_size):
    indices = good[begin:begin + batch_size]
    inputs = {"text": tf.constant([chunk[i][1] for i in indices])}
    if with_pair:
      inputs["text_pair"] = tf.constant([chunk[i][2] for i in indices])
    outputs = signature(**inputs)
    # binary: [batch] -> [batch, 1]; otherwise [batch, C].
    probabilities = outputs["probabilities"].numpy().reshape(len(indices), num_probabilities)
    names = outputs["label"].numpy()
    for j, i in enumerate(indices):
      lines[i] = ([chunk[i][0], names[j].decode("utf-8")]
                  + [format_probability(p) for p in probabilities[j]] + [""])
  stats["predicted"] += len(good)
  for i, (row_id, _, _, problem) in enumerate(chunk):
    if problem is not None:
      lines[i] = [row_id, ""] + [""] * num_probabilities + [problem]
      stats["bad_rows"][problem] = stats["bad_rows"].get(problem, 0) + 1
  return _csv_lines(lines)


def _csv_lines(rows):
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator="\n").writerows(rows)
  return buffer.getvalue()


# ------------------------------------------------------------------------------------------
# Entry point: flags only; the work is predict_csv.

flags.DEFINE_string("model", None, "Export directory written by trainer.export.")
flags.DEFINE_string("input", None, "CSV to predict (header row required).")
flags.DEFINE_string("output", None, "Predictions CSV to write.")
flags.DEFINE_string("id_column", "qid", "Id column copied to the output; empty: row numbers.")
flags.DEFINE_string("text_column", "question_text", "Text column.")
flags.DEFINE_string("text_pair_column", "", "Second text column for text-pair models.")
flags.DEFINE_integer("batch_size", 256, "Rows per model call.")
flags.DEFINE_string("encoding", "utf-8", "Input encoding (a UTF-8 byte-order mark is skipped).")
flags.DEFINE_string("delimiter", ",", "Field separator: one character, or tab / \\t for TSV.")
flags.DEFINE_boolean("unescape_html", None,
                     "Decode HTML character references in the texts; default: as the training "
                     "data (recorded in the export).")
FLAGS = flags.FLAGS


def main(argv):
  """Runs predict_csv from the parsed flags; exits 1 with one `error: ...` line on bad input."""
  del argv  # Only the program name: cli.parse_flags refuses positional arguments.
  cli.require_flags("model", "input", "output")
  try:
    predict_csv(FLAGS.model, FLAGS.input, FLAGS.output, id_column=FLAGS.id_column or None,
                text_column=FLAGS.text_column, text_pair_column=FLAGS.text_pair_column or None,
                batch_size=FLAGS.batch_size, encoding=FLAGS.encoding,
                log=lambda line: print(line, flush=True),
                delimiter=cli.parse_delimiter(FLAGS.delimiter), unescape_html=FLAGS.unescape_html)
  except (ValueError, tf.errors.OpError, OSError) as e:
    sys.exit(f"error: {cli.error_line(e)}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
