"""The predictions' columns and files, the same for serving.predict and scoring.run.

One output row per input row, in input order:
  <id column>   the row's id (or `row`, the 1-based data row number, without an id column)
  label         the predicted class name (multilabel: names joined with "|")
  probability   binary: P(label 1); multiclass / multilabel: one `probability_<label>` column
                per label instead
  error         empty, or why the row got no prediction (bertcore.row_checks' reasons; for
                TFRecord input scoring's record reasons); label and probabilities are empty then
  flag          only with --min_confidence=p: `low_confidence` when the row's top probability
                is below p (its label is then empty, its probabilities are written), else empty

The top probability (the export's probabilities are calibrated: trainer/calibration.py) is, for
binary max(P, 1 - P), for multiclass the largest class probability, and for multilabel the
least sure of the row's label decisions, min over labels of max(P, 1 - P): the row reaches the
floor only if every one of its labels does.
"""
import contextlib
import csv
import io
import json
import posixpath
import uuid
from typing import NamedTuple

import numpy as np
import tensorflow as tf

ROW_NUMBER_COLUMN = "row"
FLAG_COLUMN = "flag"
LOW_CONFIDENCE = "low_confidence"
FORMATS = ("csv", "jsonl")


class ConfidenceFloor(NamedTuple):
  """--min_confidence: rows whose top probability is below `min_confidence` get no label."""
  head: str
  min_confidence: float


def check_min_confidence(min_confidence):
  """min_confidence (None: no floor); ValueError (one line) unless 0 < min_confidence < 1."""
  if min_confidence is not None and not 0.0 < min_confidence < 1.0:
    raise ValueError(f"--min_confidence must be in (0, 1), got {min_confidence}")
  return min_confidence


def confidence_floor(metadata, min_confidence):
  """The ConfidenceFloor of an export and a --min_confidence value; None without a floor."""
  if check_min_confidence(min_confidence) is None:
    return None
  return ConfidenceFloor(metadata["head"], float(min_confidence))


def top_probability(probabilities, head):
  """A row's top probability (module docstring), float32; probabilities: its outputs."""
  p = np.asarray(probabilities, dtype=np.float32)
  if head == "multiclass":
    return p.max()
  return np.maximum(p, np.float32(1) - p).min()


def apply_floor(prediction, floor):
  """(label, probabilities) -> (the prediction to write, its flag cell): the label emptied and
  LOW_CONFIDENCE when the top probability is below the floor. flag None without a floor."""
  if floor is None:
    return prediction, None
  label, probabilities = prediction
  # In float32 on both sides, as the export compares with its threshold: a probability
  # printed as 0.9 reaches --min_confidence=0.9.
  if top_probability(probabilities, floor.head) < np.float32(floor.min_confidence):
    return ("", probabilities), LOW_CONFIDENCE
  return prediction, ""


def output_columns(metadata, id_column, floor=None):
  """The output's columns for an export's metadata: id (or `row`), label, probabilities, error,
  and flag with a confidence floor."""
  if metadata["head"] == "binary":
    probabilities = ["probability"]
  else:
    probabilities = [f"probability_{name}" for name in metadata["labels"]]
  return ([id_column or ROW_NUMBER_COLUMN, "label"] + probabilities + ["error"]
          + ([FLAG_COLUMN] if floor else []))


def format_probability(p):
  """A probability as an output cell: 7 significant digits."""
  return format(float(p), ".7g")


def output_cells(row_id, prediction, problem, num_probabilities, flag=None):
  """-> one output row's cells. prediction: (label, probabilities) or None (then `problem`).
  flag: apply_floor's flag cell ("" for a row with a problem), None without a floor column."""
  tail = [] if flag is None else [flag]
  if prediction is None:
    return [row_id, ""] + [""] * num_probabilities + [problem] + tail
  label, probabilities = prediction
  return [row_id, label] + [format_probability(p) for p in probabilities] + [""] + tail


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
