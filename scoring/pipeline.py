"""The Beam transforms of the scoring job: CSV rows or TFRecords -> RunInference -> sharded
predictions.

Graph (every stage named):

  Parts -> ReadPart -> RunInference(ExportModelHandler) -> WritePart -> <temp>/part-F-S.{csv,json}

Why this shape:
- A "part" is (input file F, split S of --num_shards). One CSV file cannot be cut at arbitrary
  bytes (quoted fields may hold newlines), so every part reads its whole file but keeps only
  its own blocks of rows: data rows are grouped in blocks of --sort_rows, and block b belongs
  to split b % num_shards. Every part also checks every row (serving.inputs: preprocessing's
  reasons, word pieces, and duplicate ids, which need all earlier rows). Nothing has to be
  shuffled, so parts run in parallel on as many workers as there are parts, and memory grows only by the duplicate-id check, which keeps
  the file's earlier ids (none without an id column; benchmarks/results/score.md's memory runs). A TFRecord file (the preprocessing job's shards) is split
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
import posixpath
import uuid
from typing import NamedTuple, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference import base as inference_base
import tensorflow as tf

from bertcore import files
from scoring import records as records_lib
from scoring import settings as settings_lib
from serving import export_info
from serving import inference
from serving import inputs
from serving import outputs

NAMESPACE = "score"
END = "__end__"  # ScoreRow.problem of the marker that closes a part.
FORMATS = outputs.FORMATS
INPUT_FORMATS = ("csv", "tfrecord")


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

  def __init__(self, encoding, columns, num_shards, sort_rows, *, model_dir, threads, delimiter,
               unescape_html):
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
    self._count_pieces = (export_info.WordPieceCounter(self._model_dir) if self._model_dir
                          else None)

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
    """-> (the file's items, to_row(item, row_number) -> ScoreRow fields from row_id on).

    Every part reads and checks all rows of its file (serving.inputs: preprocessing's reasons,
    word pieces, duplicate ids in file order) and keeps its own blocks.
    """
    rows = inputs.iter_rows(path, self._encoding, self._delimiter, self._columns,
                            self._unescape_html, count_pieces=self._count_pieces)
    return rows, lambda row, row_number: (row.row_id, row.text, row.text_pair, row.problem,
                                          row.length)

  def _emit(self, part, block, to_row):
    rows = [ScoreRow(part, block_index, len(block), row_number, *to_row(item, row_number))
            for item, row_number, block_index in block]
    yield from sort_block(rows)


class ReadRecordsPart(ReadPart):
  """ReadPart for the preprocessing job's TFRecords: a row's `text` is its serialized
  tf.Example, its id the record's example_id, its length the record's token count."""

  def __init__(self, max_seq_length, num_shards, sort_rows, *, threads):
    # Records need no CSV settings: the ids and word pieces are in them.
    super().__init__(None, None, num_shards, sort_rows, model_dir=None, threads=threads,
                     delimiter=None, unescape_html=None)
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

  def __init__(self, model_dir, signature, batch_size, *, large_model, threads, bfloat16):
    super().__init__(min_batch_size=batch_size, max_batch_size=batch_size,
                     large_model=large_model)
    self._model_dir = model_dir
    self._signature = signature
    self._threads = threads
    self._bfloat16 = bfloat16

  def load_model(self):
    set_threads(self._threads)
    if self._bfloat16:
      # The float32 export's matmuls rewritten to bfloat16 by TensorFlow's graph optimizer
      # (oneDNN), for CPUs that compute bfloat16 natively; changes probabilities by ~1e-3.
      tf.config.optimizer.set_experimental_options(
          {"auto_mixed_precision_onednn_bfloat16": True})
    return inference.load(self._model_dir)

  def run_inference(self, batch, model, inference_args=None):
    good = [row for row in batch if row.problem is None]
    predictions = iter(self._predict(model, good)) if good else iter(())
    return [inference_base.PredictionResult(row, next(predictions) if row.problem is None
                                            else None) for row in batch]

  def _predict(self, model, rows):
    """-> [(label, probabilities float32 [num_probabilities])], one per row."""
    pairs = [row.text_pair for row in rows] if self._signature == "serve_text_pair" else None
    return inference.predict(model, self._signature, [row.text for row in rows], pairs)

  def get_num_bytes(self, batch):
    return sum(len(row.text) + len(row.text_pair) for row in batch)

  def get_metrics_namespace(self):
    return NAMESPACE


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
                   "labels": collections.Counter(), "low_confidence": 0}


class WritePart(beam.DoFn):
  """PredictionResults -> <temp_dir>/part-F-S.<format> (input order) + part-F-S.json counts."""

  def __init__(self, temp_dir, columns, output_format, multilabel_separator=None, floor=None):
    self._temp_dir = temp_dir
    self._columns = columns
    self._format = output_format
    self._separator = multilabel_separator
    self._floor = floor
    # All but id, label, error and (with a floor) flag.
    self._num_probabilities = len(columns) - 3 - (floor is not None)

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
    flag = None if self._floor is None else ""
    if prediction is not None:
      prediction, flag = outputs.apply_floor(prediction, self._floor)
    part.block.append((row.row_number, outputs.output_cells(
        row.row_id, prediction, row.problem, self._num_probabilities, flag)))
    self._count(part.counts, row, prediction, flag)
    if len(part.block) == row.block_rows:
      part.block.sort(key=lambda item: item[0])
      part.file.write(outputs.encode_lines([cells for _, cells in part.block], self._columns,
                                           self._format))
      part.block = []

  def _open(self, part):
    header = outputs.header_text(self._columns, self._format)
    temp = posixpath.join(self._temp_dir, f"{part_name(part, self._format)}.{uuid.uuid4().hex}")
    return _OpenPart(temp, header)

  def _count(self, counts, row, prediction, flag):
    counts["rows"] += 1
    if prediction is None:
      counts["rejected"][row.problem] += 1
      self._rejected.inc()
      return
    counts["scored"] += 1
    self._scored.inc()
    if flag == outputs.LOW_CONFIDENCE:  # scored, but no label: not in the label histogram
      counts["low_confidence"] += 1
      return
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
    files.write_json(posixpath.join(self._temp_dir, name + ".json"), counts)

  def teardown(self):
    for part in getattr(self, "_parts", {}).values():  # A failed bundle: drop its temp files.
      part.file.close()
      if tf.io.gfile.exists(part.path):
        tf.io.gfile.remove(part.path)


class Plan(NamedTuple):
  """Everything the transforms need (picklable: it travels to the workers).

  settings: the job's settings, as scoring.run built them from its flags; the rest is what the
  driver resolved from them and the export (scoring/job.py).
  """
  settings: settings_lib.Settings
  input_files: Tuple[str, ...]
  columns: inputs.Columns             # TFRecord input: example_id
  output_columns: Tuple[str, ...]
  temp_dir: str
  unescape_html: bool                 # the flag, or the training data's
  multilabel_separator: Optional[str]
  max_seq_length: Optional[int]       # the model's; longer records are too_long
  floor: Optional[outputs.ConfidenceFloor] = None   # --min_confidence


def build(pipeline, plan: Plan):
  """Adds the scoring job to `pipeline`; complete parts land in plan.temp_dir."""
  s = plan.settings
  parts = [(i, path, split) for i, path in enumerate(plan.input_files)
           for split in range(s.num_shards)]
  signature = inference.signature_name(s.input_format, with_pair=bool(plan.columns.text_pair))
  handler = ExportModelHandler(s.model, signature, batch_size=s.batch_size,
                               large_model=s.large_model, threads=s.model_threads,
                               bfloat16=s.bfloat16)
  if s.input_format == "tfrecord":
    read = ReadRecordsPart(plan.max_seq_length, s.num_shards, s.sort_rows,
                           threads=s.model_threads)
  else:
    read = ReadPart(s.encoding, plan.columns, s.num_shards, s.sort_rows, model_dir=s.model,
                    threads=s.model_threads, delimiter=s.delimiter,
                    unescape_html=plan.unescape_html)
  _ = (pipeline
       # Create reshuffles its elements, so parts spread over the workers.
       | "Parts" >> beam.Create(parts)
       | "ReadPart" >> beam.ParDo(read)
       | "RunInference" >> inference_base.RunInference(handler)
       | "WritePart" >> beam.ParDo(WritePart(plan.temp_dir, list(plan.output_columns),
                                             s.output_format, plan.multilabel_separator,
                                             plan.floor)))
