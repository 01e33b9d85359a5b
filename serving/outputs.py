"""The predictions' columns and files, the same for serving.predict and scoring.run.

One output row per input row, in input order:
  <id column>   the row's id (or `row`, the 1-based data row number, without an id column)
  label         the predicted class name (multilabel: names joined with "|")
  probability   binary: P(label 1); multiclass / multilabel: one `probability_<label>` column
                per label instead
  error         empty, or why the row got no prediction (bertcore.row_checks' reasons; for
                TFRecord input scoring's record reasons); label and probabilities are empty then
"""
import contextlib
import csv
import io
import json
import posixpath
import uuid

import tensorflow as tf

ROW_NUMBER_COLUMN = "row"
FORMATS = ("csv", "jsonl")


def output_columns(metadata, id_column):
  """The output's columns for an export's metadata: id (or `row`), label, probabilities, error."""
  if metadata["head"] == "binary":
    probabilities = ["probability"]
  else:
    probabilities = [f"probability_{name}" for name in metadata["labels"]]
  return [id_column or ROW_NUMBER_COLUMN, "label"] + probabilities + ["error"]


def format_probability(p):
  """A probability as an output cell: 7 significant digits."""
  return format(float(p), ".7g")


def output_cells(row_id, prediction, problem, num_probabilities):
  """-> one output row's cells. prediction: (label, probabilities) or None (then `problem`)."""
  if prediction is None:
    return [row_id, ""] + [""] * num_probabilities + [problem]
  label, probabilities = prediction
  return [row_id, label] + [format_probability(p) for p in probabilities] + [""]


def encode_lines(rows, columns, output_format):
  """Output rows (lists of cells) -> the text of their lines (CSV or JSON lines)."""
  if output_format == "jsonl":
    return "".join(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n"
                   for row in rows)
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator="\n").writerows(rows)
  return buffer.getvalue()


def header_text(columns, output_format):
  """What an output file starts with: the CSV header line (JSON lines have none)."""
  return encode_lines([columns], columns, "csv") if output_format == "csv" else ""


@contextlib.contextmanager
def complete_output(output_path):
  """Yields a text file (tf.io.gfile) under a temporary name; renamed to output_path on success.

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
