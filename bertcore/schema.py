"""The TFRecord schema and the data manifest: the contract between preprocessing and training.

Every record is one tf.train.Example with UNPADDED token ids; padding and bucketing are the
trainer's job. The preprocessing writer, the trainer's reader and the exported serving
signature all use the definitions below.

How long a record is, by the manifest: unchunked data (`chunking` None) holds at most
`max_seq_length` ids, the model's input. Chunked data (`--max_chunks`, issue 38) holds each
document once, [CLS] pieces [SEP], with at most `chunking["max_pieces"] + 2` ids; the trainer
and the export cut it into windows of `max_seq_length` ids (bertcore/windows.py). Pieces past
either cap were cut by the manifest's `truncation` and counted (`truncated`, `truncated_pieces`).
"""
import copy
import dataclasses
import json
import posixpath
from typing import Any, Dict, List, Optional

import tensorflow as tf

from bertcore import files
from bertcore import names

EXAMPLE_ID = "example_id"   # bytes: the row's id (or a content hash when the CSV has no id column)
INPUT_IDS = "input_ids"     # int64[length]: [CLS] a... [SEP] (b... [SEP]), truncated
TYPE_IDS = "type_ids"       # int64[length]: 0 for the first segment, 1 for the second
LENGTH = "length"           # int64: len(input_ids)
LABEL_IDS = "label_ids"     # int64[n]: indices into the manifest's `labels`; empty when unlabeled

FEATURE_SPEC = {
    EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
    INPUT_IDS: tf.io.VarLenFeature(tf.int64),
    TYPE_IDS: tf.io.VarLenFeature(tf.int64),
    LENGTH: tf.io.FixedLenFeature([], tf.int64),
    LABEL_IDS: tf.io.VarLenFeature(tf.int64),
}

MANIFEST = names.MANIFEST_FILE
SPLITS = names.SPLITS


def make_example(example_id, input_ids, type_ids, label_ids):
  """Builds the tf.train.Example for one tokenized row (pure; no I/O)."""
  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Example(features=tf.train.Features(feature={
      EXAMPLE_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[example_id.encode()])),
      INPUT_IDS: ints(input_ids),
      TYPE_IDS: ints(type_ids),
      LENGTH: ints([len(input_ids)]),
      LABEL_IDS: ints(label_ids),
  }))


def parse_examples(serialized):
  """Parses a batch of serialized examples into dense-ragged tensors.

  Returns a dict with `input_ids`, `type_ids`, `label_ids` as tf.RaggedTensor [batch, (n)],
  `length` int64[batch] and `example_id` string[batch].
  """
  parsed = tf.io.parse_example(serialized, FEATURE_SPEC)
  for key in (INPUT_IDS, TYPE_IDS, LABEL_IDS):
    parsed[key] = tf.RaggedTensor.from_sparse(parsed[key])
  return parsed


def shard_pattern(data_dir, split, compression=None):
  suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
  return posixpath.join(data_dir, split, f"*{suffix}")


def shard_path(data_dir, split, index, num_shards, compression=None):
  suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
  return posixpath.join(data_dir, split, f"{split}-{index:05d}-of-{num_shards:05d}{suffix}")


class DataError(ValueError):
  """Raised when a data directory is missing, incomplete or does not fit the model."""


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """One split of the manifest (`splits.<name>` in manifest.json).

  rows: records written. shards: {shard file name: records}. label_histogram: {class: rows}
  (every class, 0 included). token_length / words / chars: {mean, p50, p90, p95, p99, max}
  (None values for an empty split). truncated / long_text: rows cut to max_seq_length (chunked:
  the cap) / --max_text_chars. truncated_pieces: {mean, p50, ..., max} of the word pieces cut from each
  truncated row (empty in manifests written before it was recorded). windows: {mean, p50, ...,
  max} of the windows each document is read in (chunked data; empty otherwise).
  """
  rows: int
  shards: Dict[str, int] = dataclasses.field(default_factory=dict)
  label_histogram: Dict[str, int] = dataclasses.field(default_factory=dict)
  token_length: Dict[str, Any] = dataclasses.field(default_factory=dict)
  truncated: int = 0
  long_text: int = 0
  words: Dict[str, Any] = dataclasses.field(default_factory=dict)
  chars: Dict[str, Any] = dataclasses.field(default_factory=dict)
  truncated_pieces: Dict[str, Any] = dataclasses.field(default_factory=dict)
  windows: Dict[str, Any] = dataclasses.field(default_factory=dict)


# Keys a manifest must have for the trainer to use it; the others have defaults so that
# manifests written by earlier versions (or tests' minimal ones) still read.
REQUIRED_KEYS = ("labels", "vocab_sha256", "max_seq_length", "splits")


@dataclasses.dataclass(frozen=True)
class Manifest:
  """What the preprocessing job wrote: manifest.json, typed. Built by preprocess.job.

  Its JSON form (to_json / from_json) has exactly the keys of manifest.json, so data
  directories written before this class existed read unchanged.
  """
  labels: List[str]                     # class names; label id = index
  vocab_sha256: str                     # tokenization.vocab_sha256 of the vocabulary used
  max_seq_length: int                   # the model's input (ids incl. [CLS]/[SEP]): no
                                        # unchunked record is longer; chunked: the window
  splits: Dict[str, SplitInfo]          # split name -> SplitInfo
  truncation: str = "head"              # names.TRUNCATIONS; manifests before it cut the head
  vocab_size: Optional[int] = None
  lower_case: Optional[bool] = None     # None: not recorded (old manifests)
  multi_label: bool = False
  compression: Optional[str] = None     # None or "GZIP"
  num_shards: Optional[int] = None      # shards per split
  tokenizer: Dict[str, Any] = dataclasses.field(default_factory=dict)  # type, vocab_file, ...
  package_version: Optional[str] = None
  input_files: List[str] = dataclasses.field(default_factory=list)  # --input: train/validation
  test_input_files: List[str] = dataclasses.field(default_factory=list)  # --test_input: test
  encoding: Optional[str] = None
  delimiter: str = ","
  unescape_html: bool = False           # texts were html.unescape'd before tokenization
  columns: Dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
  split_fractions: Dict[str, float] = dataclasses.field(default_factory=dict)
  rows_read: int = 0
  rows_written: int = 0
  rows_rejected: Dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> rows
  rows_rejected_total: int = 0
  dead_letter_file: str = names.DEAD_LETTER_FILE
  plots: List[str] = dataclasses.field(default_factory=list)  # paths relative to the data dir
  # None: texts truncated to max_seq_length. Else whole documents (--max_chunks), each stored
  # once with up to max_pieces word pieces, read in windows of max_seq_length ids:
  # bertcore.windows.Geometry.to_json() (chunk_length, chunk_overlap, max_chunks, max_pieces).
  chunking: Optional[Dict[str, int]] = None

  @property
  def record_length(self):
    """The most ids a record holds: max_seq_length, or the stored pieces + 2 when chunked."""
    return self.chunking["max_pieces"] + 2 if self.chunking else self.max_seq_length

  @property
  def tokenizer_vocab_file(self):
    """The vocab.txt path preprocessing read (may be on another machine), or None."""
    return self.tokenizer.get("vocab_file")

  def to_json(self):
    """The manifest.json dict (same keys and values as from_json read)."""
    data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
            if f.name != "splits"}
    data["splits"] = {name: dataclasses.asdict(info) for name, info in self.splits.items()}
    return data

  @classmethod
  def from_json(cls, data, where=MANIFEST):
    """Builds a Manifest from manifest.json's dict; DataError (one line) if it is unusable.

    where: names the file in error messages. Keys this version does not know are ignored.
    """
    if not isinstance(data, dict):
      raise DataError(f"{where} does not hold a JSON object; re-run preprocessing")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
      raise DataError(f"{where} lacks {', '.join(missing)}; re-run preprocessing")
    known = {f.name for f in dataclasses.fields(cls)} - {"splits"}
    split_fields = {f.name for f in dataclasses.fields(SplitInfo)}
    if data.get("truncation", "head") not in names.TRUNCATIONS:
      raise DataError(f"{where} has an unknown truncation {data['truncation']!r} (this version "
                      f"knows {', '.join(names.TRUNCATIONS)}); re-run preprocessing")
    try:
      splits = {name: SplitInfo(**{k: v for k, v in entry.items() if k in split_fields})
                for name, entry in data["splits"].items()}
      return cls(splits=splits, **{k: v for k, v in data.items() if k in known})
    except (TypeError, AttributeError) as e:  # e.g. a split entry without `rows`
      raise DataError(f"{where} is malformed ({e}); re-run preprocessing") from None


def write_manifest(data_dir, manifest):
  """Writes `<data_dir>/manifest.json` last and atomically: its presence marks a complete output.

  manifest: a Manifest (a manifest.json-shaped dict is validated through Manifest.from_json).
  """
  if not isinstance(manifest, Manifest):
    manifest = Manifest.from_json(manifest)
  files.write_atomic(posixpath.join(data_dir, MANIFEST),
                     json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")


def read_manifest(data_dir):
  """The Manifest of `data_dir`; DataError (one line) for a missing, partial or invalid one."""
  path = posixpath.join(data_dir, MANIFEST)
  if not tf.io.gfile.exists(path):
    raise DataError(f"{data_dir} has no {MANIFEST}: it is not the complete output of "
                    "`python -m preprocess.run` (a crashed or unfinished run leaves none)")
  try:
    data = files.read_json(path)
  except json.JSONDecodeError as e:
    raise DataError(f"{path} is not valid JSON ({e}); re-run preprocessing") from None
  return Manifest.from_json(data, where=path)
