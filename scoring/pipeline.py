"""The Beam transforms of the scoring job: CSV rows or TFRecords -> RunInference -> sharded
predictions.

Graph (every stage named):

  Parts -> ReadPart -> RunInference(ExportModelHandler) -> WritePart -> <temp>/part-F-S.{csv,json}

Why this shape:
- A "part" is (input file F, split S of --num_shards). One CSV file cannot be cut at arbitrary
  bytes (quoted fields may hold newlines), so every part parses its whole file but keeps only
  its own blocks of rows: data rows are grouped in blocks of --sort_rows, and block b belongs
  to split b % num_shards. Parsing is ~1 us/row against ~1 ms/row of inference, and nothing
  has to be shuffled, so memory does not grow with the input and parts run in parallel on as
  many workers as there are parts. A TFRecord file (the preprocessing job's shards) is split
  the same way, record by record (scoring/records.py), and scored by the export's
  serve_examples signature.
- Within a block, rows are sorted by length before Beam's BatchElements (inside RunInference)
  cuts batches: the export pads a batch to its longest row, so neighbours of similar length
  keep padding low. WritePart restores input order block by block.
- A part ends with an END marker row (carrying the part's row count) that travels the same path
  as the rows, so WritePart knows when a part is complete, also for empty parts. A complete part
  is renamed from a temporary name; the job commits the parts only when all of them exist.
- The output depends on the rows and --num_shards / --sort_rows only, never on bundling,
  batch size or the number of workers (up to the last float32 bit of a probability: a batch's
  padding width can change the summation order).
"""
import collections
import csv
import io
import json
import posixpath
import re
import uuid
from typing import NamedTuple, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference import base as inference_base
import tensorflow as tf

from bertcore import csv_source
from scoring import records as records_lib
from trainer import export
from trainer import predict

NAMESPACE = "score"
END = "__end__"  # ScoreRow.problem of the marker that closes a part.
FORMATS = ("csv", "jsonl")
INPUT_FORMATS = ("csv", "tfrecord")
_SURROGATE = re.compile("[\udc80-\udcff]")


class Columns(NamedTuple):
  """Input column names from the flags; id None numbers the rows instead."""
  id: Optional[str]
  text: str
  text_pair: Optional[str]


class ScoreRow(NamedTuple):
  """One data row on its way to the model.

  part: (file index, split). block / block_rows: the row's block and how many rows of that
  block this part has (WritePart restores order per block). row_number: 1-based data row in its
  file (for END: the part's row count). problem: None, why the row gets no prediction, or END.
  """
  part: Tuple[int, int]
  block: int
  block_rows: int
  row_number: int
  row_id: str
  text: Union[str, bytes]
  text_pair: str
  problem: Optional[str]
  length: int = 0


def column_indices(header, columns):
  """-> (id, text, text_pair) positions in the header (None for an absent column)."""
  index = lambda name: header.index(name) if name else None  # noqa: E731
  return index(columns.id), index(columns.text), index(columns.text_pair)


def parse_record(record, row_number, header, indices, unescape_html=False):
  """A CsvRecord -> (row_id, text, text_pair, problem), as trainer.predict reads a row.

  indices: column_indices(header, columns). Rows that stop trainer.predict (a CSV syntax
  error, bytes the encoding cannot decode) become rows with the error malformed_csv /
  undecodable here; an undecodable id is shown with \\xNN escapes.
  """
  id_index, text_index, pair_index = indices
  if record.fields is None:
    return (str(row_number) if id_index is None else ""), "", "", "malformed_csv"
  row_id, text, pair, problem = predict.parse_row(
      record.fields, row_number, header, id_index, text_index, pair_index, unescape_html)
  if not record.raw.isascii() and _SURROGATE.search(record.raw):
    # csv_source decodes bytes the encoding cannot read to lone surrogates.
    row_id, problem = csv_source.excerpt(row_id), "undecodable"
  if problem is not None:
    text = pair = ""
  return row_id, text, pair, problem


def sort_block(rows):
  """Rows with a problem first, then by word pieces: neighbours pad to similar widths."""
  return sorted(rows, key=lambda r: (r.problem is None, r.length))


def set_threads(threads):
  """TensorFlow's thread pools for this worker process (0: TensorFlow's default, all cores).

  N worker processes on N cores: one thread each, instead of N pools of N threads competing
  for the same cores. Must run before this process's first TensorFlow op.
  """
  if not threads:
    return
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:  # TF already ran ops in this process (the in-process runner).
    pass


class ReadPart(beam.DoFn):
  """(file index, path, split) -> ScoreRows of that part, block by block, then its END row.

  Reads CSV files; ReadRecordsPart reads TFRecord files the same way.
  """

  def __init__(self, encoding, columns, num_shards, sort_rows, model_dir=None, threads=0,
               delimiter=",", unescape_html=False):
    self._encoding = encoding
    self._delimiter = delimiter
    self._unescape_html = unescape_html
    self._columns = columns
    self._num_shards = num_shards
    self._sort_rows = sort_rows
    self._model_dir = model_dir
    self._threads = threads

  def setup(self):
    self._rows_read = Metrics.counter(NAMESPACE, "rows_read")
    set_threads(self._threads)  # Before the first op: word-piece counting runs TensorFlow.
    self._count_pieces = export.WordPieceCounter(self._model_dir) if self._model_dir else None

  def process(self, element):
    file_index, path, split = element
    part = (file_index, split)
    items, to_row = self._open(path)
    block, count, row_number = [], 0, 0
    for item in items:
      row_number += 1
      block_index = (row_number - 1) // self._sort_rows
      if block_index % self._num_shards != split:
        continue
      block.append((item, row_number, block_index))
      if len(block) == self._sort_rows:
        yield from self._emit(part, block, to_row)
        count += len(block)
        block = []
    if block:
      yield from self._emit(part, block, to_row)
      count += len(block)
    self._rows_read.inc(count)
    yield ScoreRow(part, -1, 0, count, "", "", "", END)

  def _open(self, path):
    """-> (the file's items, to_row(item, row_number) -> ScoreRow fields from row_id on)."""
    records = csv_source.iter_records(path, self._encoding, self._delimiter)
    header = [name.strip() for name in next(records).fields]  # Checked by the driver.
    indices = column_indices(header, self._columns)
    return records, lambda record, row_number: parse_record(
        record, row_number, header, indices, self._unescape_html)

  def _emit(self, part, block, to_row):
    rows = [ScoreRow(part, block_index, len(block), row_number, *to_row(item, row_number))
            for item, row_number, block_index in block]
    yield from sort_block(self._with_lengths(rows))

  def _with_lengths(self, rows):
    """Rows with their word-piece counts (one tokenizer call per block)."""
    if self._count_pieces is None:  # No model to count with: characters.
      return [row._replace(length=len(row.text) + len(row.text_pair)) for row in rows]
    pairs = [row.text_pair for row in rows] if self._columns.text_pair else None
    counts = self._count_pieces([row.text for row in rows], pairs)
    return [row._replace(length=n) for row, n in zip(rows, counts)]


class ReadRecordsPart(ReadPart):
  """ReadPart for the preprocessing job's TFRecords: a row's `text` is its serialized
  tf.Example, its id the record's example_id, its length the record's token count."""

  def __init__(self, max_seq_length, num_shards, sort_rows, threads=0):
    super().__init__(None, None, num_shards, sort_rows, threads=threads)
    self._max_seq_length = max_seq_length

  def _open(self, path):
    return records_lib.iter_records(path), self._to_row

  def _to_row(self, item, row_number):
    del row_number  # Records have their own ids.
    serialized, problem = item
    if problem is not None:  # No id can be read from a damaged record.
      return "", b"", "", problem
    example_id, length, problem = records_lib.describe_record(serialized, self._max_seq_length)
    return example_id, (b"" if problem else serialized), "", problem, length

  def _with_lengths(self, rows):
    return rows  # Read from the records.


class ExportModelHandler(inference_base.ModelHandler):
  """RunInference on a SavedModel written by trainer.export, fed strings.

  Beam's TFModelHandlerTensor feeds one numeric tensor to the model's __call__; our export
  takes string batches through named signatures, so this handler calls
  `serving_default(text=...)`, `serve_text_pair(text=..., text_pair=...)` or
  `serve_examples(examples=...)` (serialized tf.Examples). Beam's RunInference
  loads the model once per worker process (shared.Shared) and batches with BatchElements of
  exactly `batch_size` rows (except at the end of a bundle).

  Elements are ScoreRows; each result is PredictionResult(row, (label, probabilities)) or
  PredictionResult(row, None) for a row with a problem (or the END marker), which never reaches
  the model.
  """

  def __init__(self, model_dir, signature, batch_size, large_model=False, threads=0,
               bfloat16=False):
    super().__init__(min_batch_size=batch_size, max_batch_size=batch_size,
                     large_model=large_model)
    self._model_dir = model_dir
    self._signature = signature
    self._threads = threads
    self._bfloat16 = bfloat16

  def load_model(self):
    import tensorflow_text  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    set_threads(self._threads)
    if self._bfloat16:
      # The float32 export's matmuls rewritten to bfloat16 by TensorFlow's graph optimizer
      # (oneDNN), for CPUs that compute bfloat16 natively; changes probabilities by ~1e-3.
      tf.config.optimizer.set_experimental_options(
          {"auto_mixed_precision_onednn_bfloat16": True})
    return tf.saved_model.load(self._model_dir)

  def run_inference(self, batch, model, inference_args=None):
    good = [row for row in batch if row.problem is None]
    predictions = iter(self._predict(model, good)) if good else iter(())
    return [inference_base.PredictionResult(row, next(predictions) if row.problem is None
                                            else None) for row in batch]

  def _predict(self, model, rows):
    """-> [(label, probabilities float32 [num_probabilities])], one per row."""
    if self._signature == "serve_examples":
      inputs = {"examples": tf.constant([row.text for row in rows])}
    else:
      inputs = {"text": tf.constant([row.text for row in rows])}
    if self._signature == "serve_text_pair":
      inputs["text_pair"] = tf.constant([row.text_pair for row in rows])
    outputs = model.signatures[self._signature](**inputs)
    # binary: [batch] -> [batch, 1]; otherwise [batch, C].
    probabilities = outputs["probabilities"].numpy().reshape(len(rows), -1)
    labels = [name.decode("utf-8") for name in outputs["label"].numpy()]
    return list(zip(labels, probabilities))

  def get_num_bytes(self, batch):
    return sum(len(row.text) + len(row.text_pair) for row in batch)

  def get_metrics_namespace(self):
    return NAMESPACE


def format_row(row, prediction, num_probabilities):
  """-> the output cells: id, label, probabilities (7 significant digits), error."""
  if prediction is None:
    return [row.row_id, ""] + [""] * num_probabilities + [row.problem]
  label, probabilities = prediction
  return [row.row_id, label] + [predict.format_probability(p) for p in probabilities] + [""]


def encode_lines(cells, columns, output_format):
  """Output rows (lists of cells) -> the text of their lines (CSV or JSON lines)."""
  if output_format == "jsonl":
    return "".join(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n"
                   for row in cells)
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator="\n").writerows(cells)
  return buffer.getvalue()


def part_name(part, output_format):
  return f"part-{part[0]:05d}-{part[1]:05d}.{output_format}"


class _OpenPart:
  """The state of one part being written: its temp file, the current block, the counts."""

  def __init__(self, path, header_text):
    self.path = path
    self.file = tf.io.gfile.GFile(path, "w")
    self.file.write(header_text)
    self.block = []  # (row_number, cells) of the current block, in arrival order.
    self.counts = {"rows": 0, "scored": 0, "rejected": collections.Counter(),
                   "labels": collections.Counter()}


class WritePart(beam.DoFn):
  """PredictionResults -> <temp_dir>/part-F-S.<format> (input order) + part-F-S.json counts."""

  def __init__(self, temp_dir, columns, output_format, multilabel_separator=None):
    self._temp_dir = temp_dir
    self._columns = columns
    self._format = output_format
    self._separator = multilabel_separator
    self._num_probabilities = len(columns) - 3

  def setup(self):
    self._parts = {}
    self._scored = Metrics.counter(NAMESPACE, "rows_scored")
    self._rejected = Metrics.counter(NAMESPACE, "rows_rejected")

  def process(self, result):
    row, prediction = result.example, result.inference
    part = self._parts.get(row.part)
    if part is None:
      part = self._parts[row.part] = self._open(row.part)
    if row.problem == END:
      self._close(row.part, part, expected_rows=row.row_number)
      return
    part.block.append((row.row_number, format_row(row, prediction, self._num_probabilities)))
    self._count(part.counts, row, prediction)
    if len(part.block) == row.block_rows:
      part.block.sort(key=lambda item: item[0])
      part.file.write(encode_lines([cells for _, cells in part.block], self._columns,
                                   self._format))
      part.block = []

  def _open(self, part):
    header = encode_lines([self._columns], self._columns, "csv") if self._format == "csv" else ""
    temp = posixpath.join(self._temp_dir, f"{part_name(part, self._format)}.{uuid.uuid4().hex}")
    return _OpenPart(temp, header)

  def _count(self, counts, row, prediction):
    counts["rows"] += 1
    if prediction is None:
      counts["rejected"][row.problem] += 1
      self._rejected.inc()
      return
    counts["scored"] += 1
    self._scored.inc()
    label = prediction[0]
    names = label.split(self._separator) if self._separator and label else [label]
    counts["labels"].update(names)

  def _close(self, key, part, expected_rows):
    del self._parts[key]
    part.file.close()
    if part.block or part.counts["rows"] != expected_rows:
      raise RuntimeError(f"part {key}: {part.counts['rows']} rows written, {expected_rows} read")
    name = part_name(key, self._format)
    tf.io.gfile.rename(part.path, posixpath.join(self._temp_dir, name), overwrite=True)
    counts = dict(part.counts, rejected=dict(part.counts["rejected"]),
                  labels=dict(part.counts["labels"]))
    with tf.io.gfile.GFile(posixpath.join(self._temp_dir, name + ".json"), "w") as f:
      f.write(json.dumps(counts, sort_keys=True))

  def teardown(self):
    for part in getattr(self, "_parts", {}).values():  # A failed bundle: drop its temp files.
      part.file.close()
      if tf.io.gfile.exists(part.path):
        tf.io.gfile.remove(part.path)


class ScoreConfig(NamedTuple):
  """Everything the transforms need (picklable: it travels to the workers)."""
  input_files: Tuple[str, ...]
  model_dir: str
  temp_dir: str
  encoding: str
  columns: Columns
  output_columns: Tuple[str, ...]
  output_format: str
  num_shards: int
  sort_rows: int
  batch_size: int
  multilabel_separator: Optional[str]
  large_model: bool = False
  model_threads: int = 0
  delimiter: str = ","
  unescape_html: bool = False
  input_format: str = "csv"           # or "tfrecord": the preprocessing job's records
  max_seq_length: Optional[int] = None  # the model's; longer records are too_long
  bfloat16: bool = False


def signature_name(config):
  """The export's signature for the input: records, text pairs or texts."""
  if config.input_format == "tfrecord":
    return "serve_examples"
  return "serve_text_pair" if config.columns.text_pair else "serving_default"


def build(pipeline, config: ScoreConfig):
  """Adds the scoring job to `pipeline`; complete parts land in config.temp_dir."""
  c = config
  parts = [(i, path, split) for i, path in enumerate(c.input_files)
           for split in range(c.num_shards)]
  handler = ExportModelHandler(c.model_dir, signature_name(c), batch_size=c.batch_size,
                               large_model=c.large_model, threads=c.model_threads,
                               bfloat16=c.bfloat16)
  if c.input_format == "tfrecord":
    read = ReadRecordsPart(c.max_seq_length, c.num_shards, c.sort_rows, threads=c.model_threads)
  else:
    read = ReadPart(c.encoding, c.columns, c.num_shards, c.sort_rows, model_dir=c.model_dir,
                    threads=c.model_threads, delimiter=c.delimiter,
                    unescape_html=c.unescape_html)
  _ = (pipeline
       # Create reshuffles its elements, so parts spread over the workers.
       | "Parts" >> beam.Create(parts)
       | "ReadPart" >> beam.ParDo(read)
       | "RunInference" >> inference_base.RunInference(handler)
       | "WritePart" >> beam.ParDo(WritePart(c.temp_dir, list(c.output_columns),
                                             c.output_format, c.multilabel_separator)))
