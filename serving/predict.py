"""Batch inference on an unlabeled CSV with an exported model (trainer.export), in one process.

  python -m serving.predict --model=<export dir> --input=test.csv --output=predictions.csv \\
      [--id_column=qid --text_column=question_text --text_pair_column= --batch_size=256 \\
       --encoding=utf-8 --delimiter=, --unescape_html --min_confidence=0.9]

(`python -m trainer.predict`, its former name, runs the same.)

--delimiter=tab reads TSV. --unescape_html decodes HTML character references (`&#039;`) in the
texts before the model sees them; the export cannot do that in-graph, so by default it follows
the training data (the export's metadata records preprocessing's --unescape_html).

The output has one row per input row, in input order, with the columns of serving.outputs (id
or `row`, label, probability column(s), error). A row that gets no prediction keeps its id, has
empty label / probability cells and the reason in `error`: the reject reasons of preprocessing
(bertcore.row_checks: malformed_csv, undecodable, nul_character, wrong_column_count, missing_id,
empty_text, duplicate_id), read by the same reader (serving.inputs). Such rows are counted in
the summary, never dropped; blank lines are not rows. --min_confidence=p adds a `flag` column:
a row whose top probability is below p has an empty label and `low_confidence` there (its
probabilities are still written; serving.outputs defines the top probability per head).

Input and output go through Beam's FileSystems / tf.io.gfile (gs:// works); the output is
written to a temporary name and renamed when complete. Rows are read in chunks and sorted by
word pieces (the export's tokenizer) within a chunk before batching, so that a batch pads to
similar lengths; results are written in input order. For millions of rows, scoring.run does the
same as a Beam job.
"""
import collections
import dataclasses
import sys
import time
from typing import Optional

from absl import app
from absl import flags
import tensorflow as tf

from bertcore import cli
from serving import export_info
from serving import inference
from serving import inputs
from serving import outputs

CHUNK_BATCHES = 16  # Rows sorted by length together: batch_size * CHUNK_BATCHES.
PROGRESS_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
  """What one prediction run does: the flags, normalized (make_settings)."""
  model_dir: str                  # --model: a directory written by trainer.export
  input_path: str                 # --input: the CSV, with a header row
  output_path: str                # --output: the predictions CSV (UTF-8); replaced if it exists
  columns: inputs.Columns         # id None: number the rows
  batch_size: int                 # rows per model call
  encoding: str                   # a UTF-8 byte-order mark is skipped
  delimiter: str                  # one character ("\t" for TSV)
  unescape_html: Optional[bool]   # None: as the training data (the export's metadata)
  min_confidence: Optional[float] = None  # the confidence floor; None: no floor


# The flags make_settings reads besides --model, --input and --output.
OPTION_FLAGS = ("batch_size",) + cli.CSV_FLAGS + cli.PREDICTION_FLAGS


def make_settings(model_dir, input_path, output_path, **options):
  """-> Settings. options: values of OPTION_FLAGS by flag name (e.g. id_column="id",
  delimiter="tab"); the others take the flag's default. ValueError (one line) for a bad one."""
  unknown = sorted(set(options) - set(OPTION_FLAGS))
  if unknown:
    raise TypeError(f"make_settings: unknown option(s) {unknown}")
  value = {name: options.get(name, FLAGS[name].default) for name in OPTION_FLAGS}
  if value["batch_size"] < 1:
    raise ValueError(f"batch_size must be positive, got {value['batch_size']}")
  outputs.check_min_confidence(value["min_confidence"])
  return Settings(
      model_dir=model_dir, input_path=input_path, output_path=output_path,
      columns=inputs.Columns(value["id_column"] or None, value["text_column"],
                             value["text_pair_column"] or None),
      batch_size=value["batch_size"], encoding=value["encoding"],
      delimiter=cli.parse_delimiter(value["delimiter"]), unescape_html=value["unescape_html"],
      min_confidence=value["min_confidence"])


def predict_csv(model_dir, input_path, output_path, log=print, **options):
  """Predicts every row of a CSV and writes predictions.csv: predict() of
  make_settings(model_dir, input_path, output_path, **options), for callers without flags."""
  return predict(make_settings(model_dir, input_path, output_path, **options), log)


def predict(settings, log=print):
  """Predicts every row of settings.input_path and writes settings.output_path (see the module
  docstring).

  Args:
    settings: a Settings (make_settings).
    log: receives the progress lines.
  Returns:
    A summary dict: rows_read, rows_scored, rows_rejected {reason: count},
    rows_rejected_total, rows_low_confidence (None without --min_confidence), seconds,
    rows_per_second, output, columns.
  Raises:
    ValueError with a one-line message for a missing model, input or column.
  """
  s = settings
  metadata = export_info.check_export(s.model_dir)
  warning = export_info.emulation_warning(metadata)
  if warning:
    log(warning)
  if s.columns.text_pair:
    export_info.check_signature(metadata, s.model_dir, "serve_text_pair", "--text_pair_column")
  # The header first: a wrong column fails before the model is loaded.
  inputs.read_layout(s.input_path, s.encoding, s.delimiter, s.columns)
  unescape_html = export_info.unescape_html_default(metadata, s.unescape_html)
  floor = outputs.confidence_floor(metadata, s.min_confidence)
  output_columns = outputs.output_columns(metadata, s.columns.id, floor)
  model = inference.load(s.model_dir)
  signature = inference.signature_name(with_pair=bool(s.columns.text_pair))
  counts = {"rows": 0, "scored": 0, "rejected": collections.Counter(),
            "low_confidence": 0 if floor else None}
  progress = _Progress(log)
  with outputs.complete_output(s.output_path) as out:
    out.write(outputs.header_text(output_columns, "csv"))
    rows = inputs.iter_rows(s.input_path, s.encoding, s.delimiter, s.columns, unescape_html,
                            count_pieces=export_info.WordPieceCounter(s.model_dir))
    for chunk in _chunks(rows, s.batch_size * CHUNK_BATCHES):
      out.write(_predict_chunk(model, signature, chunk, s.batch_size, output_columns, counts,
                               floor))
      progress.report(counts["rows"])
  summary = _summary(counts, progress.seconds(), s.output_path, output_columns)
  log(_summary_line(summary))
  return summary


class _Progress:
  """Logs the rows read and rows/s, at most every PROGRESS_SECONDS."""

  def __init__(self, log):
    self._log = log
    self._start = self._last = time.monotonic()

  def report(self, rows):
    now = time.monotonic()
    if now - self._last >= PROGRESS_SECONDS:
      self._last = now
      self._log(f"predict: {rows} rows, {rows / (now - self._start):.0f} rows/s")

  def seconds(self):
    return time.monotonic() - self._start


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


def _predict_chunk(model, signature, chunk, batch_size, columns, counts, floor=None):
  """Predicts the good InputRows of a chunk; returns the chunk's output lines in input order."""
  # All but id, label, error and (with a floor) flag.
  num_probabilities = len(columns) - 3 - (floor is not None)
  with_pair = signature == "serve_text_pair"
  # By word pieces (InputRow.length): the export pads each batch to its longest row.
  good = sorted((i for i, row in enumerate(chunk) if row.problem is None),
                key=lambda i: (chunk[i].length, i))
  predictions = [None] * len(chunk)
  for begin in range(0, len(good), batch_size):
    indices = good[begin:begin + batch_size]
    batch = inference.predict(model, signature, [chunk[i].text for i in indices],
                              [chunk[i].text_pair for i in indices] if with_pair else None)
    for i, prediction in zip(indices, batch):
      predictions[i] = prediction
  counts["rows"] += len(chunk)
  counts["scored"] += len(good)
  counts["rejected"].update(row.problem for row in chunk if row.problem is not None)
  lines = []
  for row, prediction in zip(chunk, predictions):
    flag = None if floor is None else ""
    if prediction is not None:
      prediction, flag = outputs.apply_floor(prediction, floor)
      if flag == outputs.LOW_CONFIDENCE:
        counts["low_confidence"] = counts.get("low_confidence", 0) + 1
    lines.append(outputs.output_cells(row.row_id, prediction, row.problem, num_probabilities,
                                      flag))
  return outputs.encode_lines(lines, columns, "csv")


def _summary(counts, seconds, output_path, columns):
  """The summary dict that predict_csv returns (see there), from the run's counts."""
  return {
      "rows_read": counts["rows"], "rows_scored": counts["scored"],
      "rows_rejected": dict(sorted(counts["rejected"].items())),
      "rows_rejected_total": sum(counts["rejected"].values()),
      "rows_low_confidence": counts["low_confidence"],
      "seconds": round(seconds, 3),
      "rows_per_second": round(counts["rows"] / seconds, 1) if seconds > 0 else None,
      "output": output_path, "columns": columns,
  }


def _summary_line(summary):
  """The final log line: counts, reasons for rows without prediction, speed, output."""
  rejected = ", ".join(f"{k} {v}" for k, v in summary["rows_rejected"].items())
  hint = ("; undecodable rows: is --encoding right (e.g. latin-1)?"
          if "undecodable" in summary["rows_rejected"] else "")
  low = summary["rows_low_confidence"]
  return (f"predict: done: {summary['rows_read']} rows, {summary['rows_scored']} predicted"
          f"{'' if low is None else f' ({low} below --min_confidence: low_confidence)'}, "
          f"{summary['rows_rejected_total']} without prediction"
          f"{f' ({rejected})' if rejected else ''}{hint}; {summary['seconds']:.1f} s, "
          f"{summary['rows_per_second']} rows/s -> {summary['output']}")


# ------------------------------------------------------------------------------------------
# Entry point: flags only; the work is predict(settings).

flags.DEFINE_string("model", None, "Export directory written by trainer.export.")
flags.DEFINE_string("input", None, "CSV to predict (header row required).")
flags.DEFINE_string("output", None, "Predictions CSV to write.")
flags.DEFINE_integer("batch_size", 256, "Rows per model call.")
cli.define_shared_flags(cli.CSV_FLAGS + cli.PREDICTION_FLAGS)
FLAGS = flags.FLAGS


def main(argv):
  """Builds the Settings from the parsed flags and runs predict; exits 1 with one
  `error: ...` line on bad input."""
  del argv  # Only the program name: cli.parse_flags refuses positional arguments.
  cli.require_flags("model", "input", "output")
  try:
    settings = make_settings(FLAGS.model, FLAGS.input, FLAGS.output,
                             **{name: FLAGS[name].value for name in OPTION_FLAGS})
    predict(settings, log=lambda line: print(line, flush=True))
  except (ValueError, tf.errors.OpError, OSError) as e:
    sys.exit(f"error: {cli.error_line(e)}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
