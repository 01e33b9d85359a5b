"""The Beam transforms of the preprocessing job: CSV -> validated rows -> token ids -> shards.

Graph (every stage named):

  Files -> ReadCsv -> ValidateRows -> Tokenize -> WriteTempShards --+
             |            |              |                          | shard -> (split, temp file)
             |            |              |       AllShardKeys ------+-> GroupByShard -> WriteShards
             |            +--------------+-- rejected ------------------------------------+ |
             |            +-> DiscoverLabels (side input of WriteShards)                   | |
             |                                                   WriteDeadLetter <---------+-+
             +-- rows_read ---------------------> CollectSummary <-- shard stats, labels, counts

Why this shape:
- Rows travel in chunks (lists of up to --batch_size rows), so Beam's per-element cost is paid per
  chunk and the tokenizer runs once per chunk.
- Records reach their shard through temp files grouped by shard number: only file names
  go through the GroupByKey. A runner that holds grouped data in memory (the local FnApiRunner
  does) therefore never holds the data set, and memory does not grow with the input.
- WriteShards writes shard k of every split: it orders the rows by a salted hash of their id
  (rows.order_key: pseudo-random whatever the input's order, so a CSV sorted by label with ids
  in file order does not become label-sorted shards) and resolves duplicate ids there (all rows of one id hash to one shard number, whatever their split: a row
  of a --test_input file and a training row with the same id meet there), so the bytes written
  never depend on bundling, batching or parallelism.
- Memory: one worker holds at most one shard number (rows / num_shards on average) in WriteShards,
  and WriteDeadLetter holds the rejections (small, excerpts are cut to 200 characters).
- Discovered labels (no --labels) are the labels of the rows that pass ValidateRows; a class
  seen only on rows later rejected as duplicate_id or empty_text keeps a 0 in the histograms.
"""
import collections
import concurrent.futures
import json
import marshal
import posixpath
import uuid
from typing import List, NamedTuple, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue
import numpy as np
import tensorflow as tf

from bertcore import files
from bertcore import private_apis
from bertcore import schema
from bertcore.names import DEAD_LETTER_FILE as DEAD_LETTER
from bertcore import csv_source
from preprocess import progress as progress_lib
from preprocess import records as records_lib
from preprocess import rows
from preprocess import settings as settings_lib
from preprocess import stats

NAMESPACE = "preprocess"
SUMMARY = "summary.json"


class Plan(NamedTuple):
  """Everything the transforms need (picklable: it travels to remote workers): the job's
  settings, as preprocess.run built them, and what the driver resolved from them (job.py)."""
  settings: settings_lib.Settings
  # Every input file, the --test_input files first, so they win duplicate ids (the first row
  # by (file index, line) is kept).
  input_files: Tuple[str, ...]
  test_files: Tuple[str, ...]  # The --test_input files: all their rows go to test.
  temp_dir: str
  vocab: List[str]             # The lines of settings.vocab_path.


def _counter(name):
  return Metrics.counter(NAMESPACE, name)


class ReadCsv(beam.DoFn):
  """File path -> (layout, [CsvRecord] chunks); tagged `rows_read`: (path, data records)."""

  def __init__(self, encoding, columns, batch_size, delimiter):
    self._encoding = encoding
    self._columns = columns
    self._batch_size = batch_size
    self._delimiter = delimiter

  def setup(self):
    self._rows_read = _counter("rows_read")

  def process(self, path):
    records = csv_source.iter_records(path, self._encoding, self._delimiter)
    header = next(records, None)
    count = 0
    if header is not None:  # The driver already refused files without the needed columns.
      layout = rows.make_layout(header.fields, self._columns, path)
      # Time-based, so small files print nothing (on Dataflow the lines go to worker logs).
      progress = progress_lib.Progress(posixpath.basename(path), csv_source.progress_size(path))
      bytes_read = len(header.raw)
      chunk = []
      for record in records:
        chunk.append(record)
        if len(chunk) == self._batch_size:
          yield layout, chunk
          count += len(chunk)
          bytes_read += csv_source.encoded_size(chunk, self._encoding)
          progress.update(count, bytes_read)
          chunk = []
      if chunk:
        yield layout, chunk
        count += len(chunk)
    self._rows_read.inc(count)
    yield beam.pvalue.TaggedOutput("rows_read", (path, count))


class ValidateRows(beam.DoFn):
  """(layout, [CsvRecord]) -> [Row] (main output); tagged `rejected`: Rejection."""

  def __init__(self, row_config):
    self._config = row_config

  def setup(self):
    self._rejected = collections.defaultdict(lambda: None)

  def _count(self, reason):
    if self._rejected[reason] is None:
      self._rejected[reason] = _counter(f"rejected_{reason}")
    self._rejected[reason].inc()

  def process(self, element):
    layout, records = element
    kept = []
    for record in records:
      result = rows.convert_row(record, layout, self._config)
      if isinstance(result, rows.Row):
        kept.append(result)
      else:
        self._count(result.reason)
        yield beam.pvalue.TaggedOutput("rejected", result)
    if kept:
      yield kept


class UnionLabels(beam.CombineFn):
  """[Row] chunks -> the sorted tuple of all class names seen."""

  def create_accumulator(self):
    return set()

  def add_input(self, accumulator, chunk):
    for row in chunk:
      accumulator.update(row.labels)
    return accumulator

  def merge_accumulators(self, accumulators):
    return set().union(*accumulators)

  def extract_output(self, accumulator):
    return tuple(sorted(accumulator))


class Tokenize(beam.DoFn):
  """[Row] -> [(split, shard, payload)]: token ids for a whole chunk in one tokenizer call.

  payload: the chunk's rows of one (split, shard), marshalled as a list of tuples
  (example_id, file index, line, label names, before, after, token_length, truncated,
  long_text, words, chars, excerpt) for WriteShards, where before/after are the serialized
  Example entries around label_ids (labels may not be known yet). marshal, not pickle: it is
  ~3x faster for these builtin types, and temp files never outlive the job.
  Tagged `rejected`: rows whose text has no word piece at all (e.g. only control characters),
  as empty_text.
  """

  def __init__(self, plan: Plan, pairs: bool):
    self._plan = plan
    self._pairs = pairs

  def setup(self):
    from bertcore import tokenization
    plan, c = self._plan, self._plan.settings
    # With chunking a record holds the whole document up to the windows' cap (the trainer and
    # the export cut the windows); --truncation then chooses what a longer one keeps.
    encoder = tokenization.TextEncoder(plan.vocab, c.lower_case, c.record_length, c.truncation)
    spec = tf.TensorSpec([None], tf.string)
    # A traced function is ~5x faster than eager ragged ops on 512-row batches.
    # autograph=False: encode has no Python control flow on tensors; converting it costs ~4 s.
    if self._pairs:
      self._encode = tf.function(encoder.encode, input_signature=[spec, spec], autograph=False)
    else:
      self._encode = tf.function(lambda texts: encoder.encode(texts), input_signature=[spec],
                                 autograph=False)
    self._records = records_lib.ExampleEncoder(max(len(plan.vocab), 128))
    # Sorting by file index = by (test files first, path); an int is cheaper to store.
    self._file_index = {path: i for i, path in enumerate(plan.input_files)}
    self._test_files = frozenset(plan.test_files)
    self._segments = 2 if self._pairs else 1
    self._budget = c.record_length - 1 - self._segments  # [CLS] and one [SEP] per segment.
    self._empty = _counter("rejected_empty_text")
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tokenize")

  def start_bundle(self):
    self._pending = None  # The future of the chunk being tokenized.

  def _tokenize(self, chunk):
    """Runs on the helper thread: the tokenizer and varint packing (numpy), GIL mostly free."""
    texts = tf.constant([row.text for row in chunk])
    if self._pairs:
      input_ids, type_ids, num_pieces = self._encode(
          texts, tf.constant([row.text_pair for row in chunk]))
    else:
      input_ids, type_ids, num_pieces = self._encode(texts)
    splits = input_ids.row_splits.numpy()
    packed_ids, id_offsets = records_lib.pack_batch(input_ids.flat_values.numpy(), splits)
    packed_types = type_ids.flat_values.numpy().astype(np.uint8).tobytes()  # 0/1: one byte each
    return chunk, splits.tolist(), packed_ids, id_offsets, packed_types, num_pieces.numpy().tolist()

  def _emit(self, tokenized):
    chunk, splits, packed_ids, id_offsets, packed_types, num_pieces = tokenized
    c = self._plan.settings
    groups = collections.defaultdict(list)  # (split, shard) -> record tuples
    for i, row in enumerate(chunk):
      start, end = splits[i], splits[i + 1]
      if end - start == 1 + self._segments:  # Only [CLS] and [SEP]s: no word piece survived.
        self._empty.inc()
        yield beam.pvalue.TaggedOutput(
            "rejected", rows.Rejection("empty_text", row.file, row.line, row.excerpt))
        continue
      split, shard = rows.assign_split(row.example_id, c.split_salt, c.train_fraction,
                                       c.validation_fraction, c.num_shards,
                                       from_test_file=row.file in self._test_files)
      before, after = self._records.parts_packed(
          row.example_id, packed_ids[id_offsets[i]:id_offsets[i + 1]], end - start,
          packed_types[start:end])
      groups[(split, shard)].append(
          (row.example_id, self._file_index[row.file], row.line, row.labels, before, after,
           num_pieces[i] + 1 + self._segments, num_pieces[i] > self._budget, row.long_text,
           row.words, row.chars, row.excerpt))
    if groups:
      yield [(split, shard, marshal.dumps(group)) for (split, shard), group in groups.items()]

  def process(self, chunk):
    # Tokenize this chunk on the helper thread (TensorFlow releases the GIL) while this thread
    # serializes the previous one and goes back to reading and validating rows: two cores busy.
    future = self._pool.submit(self._tokenize, chunk)
    if self._pending is not None:
      yield from self._emit(self._pending.result())
    self._pending = future

  def finish_bundle(self):
    if self._pending is not None:
      tokenized, self._pending = self._pending.result(), None
      for output in self._emit(tokenized):
        if isinstance(output, beam.pvalue.TaggedOutput):
          yield beam.pvalue.TaggedOutput(output.tag, _global(output.value))
        else:
          yield _global(output)

  def teardown(self):
    self._pool.shutdown(wait=True)


def _global(value):
  """An output of finish_bundle must carry its window."""
  return WindowedValue(value, window.MIN_TIMESTAMP, [window.GlobalWindow()])


class WriteTempShards(beam.DoFn):
  """[(split, shard, payload)] -> (shard, (split, temp file)): one temp file per (split, shard)
  and bundle.

  Files of a failed bundle attempt are never emitted, so retries cannot duplicate rows; the
  driver deletes the whole temp directory at the end.
  """

  def __init__(self, temp_dir):
    self._temp_dir = temp_dir

  def start_bundle(self):
    self._writers = {}

  def process(self, items):
    for split, shard, payload in items:
      writer = self._writers.get((split, shard))
      if writer is None:
        path = posixpath.join(self._temp_dir, f"{split}-{shard:05d}-{uuid.uuid4().hex}.rec")
        writer = self._writers[(split, shard)] = (path, tf.io.TFRecordWriter(path))
      writer[1].write(payload)

  def finish_bundle(self):
    for (split, shard), (path, writer) in sorted(self._writers.items()):
      writer.close()
      yield _global((shard, (split, path)))
    self._writers = {}


class WriteShards(beam.DoFn):
  """(shard, [(split, temp file)]) -> shard `shard` of every split, in the order of
  rows.order_key (a salted hash of the example id); yields the stats of each.

  Rows sharing an id (they share a shard number, whatever their split): the first by
  (file index, line) is written, the others are tagged `rejected` as duplicate_id. Each shard is
  written under a temporary name and renamed, so a shard file with its final name is complete.
  """

  def __init__(self, input_files, output_dir, num_shards, compression, salt):
    self._input_files = list(input_files)
    self._salt = salt
    self._output_dir = output_dir
    self._num_shards = num_shards
    self._compression = compression

  def setup(self):
    self._records = records_lib.ExampleEncoder(128)
    self._written = _counter("rows_written")
    self._duplicates = _counter("rejected_duplicate_id")

  def process(self, element, labels):
    shard, temp_files = element
    records = []  # (record tuple, split)
    for split, path in sorted(p for p in temp_files if p is not None):
      for payload in private_apis.tf_record_iterator(path):
        records.extend((record, split) for record in marshal.loads(payload))
    # Rows of one id stay adjacent (same hash, then the id), the first by (file index, line).
    records.sort(key=lambda item: (rows.order_key(item[0][0], self._salt), item[0][:3]))

    kept = {split: [] for split in schema.SPLITS}
    previous_id = None
    for record, split in records:
      if record[0] == previous_id:
        self._duplicates.inc()
        yield beam.pvalue.TaggedOutput("rejected", rows.Rejection(
            "duplicate_id", self._input_files[record[1]], record[2], record[11]))
        continue
      previous_id = record[0]
      kept[split].append(record)
    label_index = {name: i for i, name in enumerate(labels)}
    for split in schema.SPLITS:
      yield self._write(split, shard, kept[split], label_index)

  def _write(self, split, shard, records, label_index):
    """Writes one shard file of `records` (in order, unique ids); returns its stats dict."""
    label_entries = {}  # label names -> serialized label_ids entry
    path = schema.shard_path(self._output_dir, split, shard, self._num_shards, self._compression)
    partial = f"{path}.partial"
    options = tf.io.TFRecordOptions(compression_type=self._compression or "")
    with tf.io.TFRecordWriter(partial, options) as writer:
      for record in records:
        names = record[3]
        label_entry = label_entries.get(names)
        if label_entry is None:
          label_entry = label_entries[names] = self._records.ints_entry(
              schema.LABEL_IDS, [label_index[name] for name in names])
        writer.write(self._records.join(record[4], label_entry, record[5]))
    tf.io.gfile.rename(partial, path, overwrite=True)
    shard_stats = stats.empty_stats()
    if records:
      # (example_id, file, line, names, before, after, token_length, truncated, long_text,
      #  words, chars, excerpt)
      columns = list(zip(*records))
      stats.add_rows(shard_stats, columns[3], columns[6], columns[7], columns[8], columns[9],
                     columns[10])
    self._written.inc(shard_stats["rows"])
    return {"split": split, "shard": shard, "file": posixpath.basename(path), "stats": shard_stats}


def write_dead_letter(rejections, output_dir):
  """Writes all rejections, sorted by (file, line, reason), as JSON lines; returns counts."""
  rejections = sorted(rejections, key=lambda r: (r.file, r.line, r.reason))
  files.write_atomic(posixpath.join(output_dir, DEAD_LETTER), "".join(
      json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True) + "\n" for r in rejections))
  return dict(sorted(collections.Counter(r.reason for r in rejections).items()))


def write_summary(parts, temp_dir):
  """Gathers the small per-file / per-shard results into one JSON file for the driver."""
  summary = {"rows_read": {}, "shards": [], "rows_rejected": {}, "labels": []}
  for kind, value in parts:
    if kind == "read":
      summary["rows_read"][value[0]] = value[1]
    elif kind == "shard":
      summary["shards"].append(dict(value, stats=stats.to_json(value["stats"])))
    elif kind == "rejected":
      summary["rows_rejected"] = value
    elif kind == "labels":
      summary["labels"] = list(value)
  summary["shards"].sort(key=lambda s: (s["split"], s["shard"]))
  files.write_json(posixpath.join(temp_dir, SUMMARY), summary)


def build(pipeline, plan: Plan):
  """Adds the whole job to `pipeline`; results land in the output_dir and plan.temp_dir."""
  c = plan.settings
  read = (pipeline
          | "Files" >> beam.Create(list(plan.input_files))
          | "ReadCsv" >> beam.ParDo(ReadCsv(c.encoding, c.columns, c.batch_size, c.delimiter))
          .with_outputs("rows_read", main="chunks"))
  valid = read.chunks | "ValidateRows" >> beam.ParDo(ValidateRows(c.row_config)).with_outputs(
      "rejected", main="rows")
  tokenized = valid.rows | "Tokenize" >> beam.ParDo(
      Tokenize(plan, pairs=c.columns.text_pair is not None)).with_outputs("rejected",
                                                                         main="records")

  if c.labels is not None:
    labels = pipeline | "FixedLabels" >> beam.Create([tuple(c.labels)])
  else:
    labels = valid.rows | "DiscoverLabels" >> beam.CombineGlobally(UnionLabels())

  temp_files = tokenized.records | "WriteTempShards" >> beam.ParDo(
      WriteTempShards(plan.temp_dir))
  # Every shard number gets a key, so that empty shards are written too and the count is fixed.
  all_keys = pipeline | "AllShardKeys" >> beam.Create(
      [(shard, None) for shard in range(c.num_shards)])
  shards = ((temp_files, all_keys)
            | "FlattenShardKeys" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(
                WriteShards(plan.input_files, c.output_dir, c.num_shards, c.compression,
                            c.split_salt),
                labels=beam.pvalue.AsSingleton(labels)).with_outputs("rejected", main="stats"))

  rejected_counts = (
      (valid.rejected, tokenized.rejected, shards.rejected)
      | "FlattenRejected" >> beam.Flatten()
      | "GatherRejected" >> beam.combiners.ToList()
      | "WriteDeadLetter" >> beam.Map(write_dead_letter, c.output_dir))

  _ = ((read.rows_read | "TagRead" >> beam.Map(lambda x: ("read", x)),
        shards.stats | "TagShards" >> beam.Map(lambda x: ("shard", x)),
        rejected_counts | "TagRejected" >> beam.Map(lambda x: ("rejected", x)),
        labels | "TagLabels" >> beam.Map(lambda x: ("labels", x)))
       | "FlattenSummary" >> beam.Flatten()
       | "GatherSummary" >> beam.combiners.ToList()
       | "CollectSummary" >> beam.Map(write_summary, plan.temp_dir))
