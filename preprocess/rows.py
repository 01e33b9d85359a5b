"""Per-row validation and conversion: pure functions, no I/O (unit-tested directly).

A CSV record becomes either a `Row` (kept) or a `Rejection` (written to the dead-letter file).
The checks and their reasons are bertcore.row_checks' (shared with serving.predict and
scoring.run; its docstring lists them in order), then the label checks (missing_label,
unknown_label); duplicate_id is decided later, per shard: among kept rows with one id, the first
by (file, line) wins and the others are rejected (see pipeline.py); --test_input files come
before --input files, so a training row that repeats a test row is the one rejected (no test
text is trained on).
With --unescape_html, HTML character references in the text(s) are decoded first (`&#039;` ->
`'`, `&quot;` -> `"`, as review sites store them), so every check and statistic sees the text
the tokenizer gets. A text longer than --max_text_chars is kept but cut to that many characters
before tokenization and counted as `long_text` (it is not a rejection).

Labels are compared as strings after stripping whitespace: " 1" is "1", but "1.0" is not "1"
(with --labels=0,1 it is an unknown_label; without --labels it becomes a class of its own).
"""
import hashlib
from typing import Dict, FrozenSet, NamedTuple, Optional, Tuple

from bertcore import csv_source
from bertcore import row_checks

REJECT_REASONS = row_checks.REJECT_REASONS
Layout = row_checks.Layout  # Where the columns are in one file (from its header).
LONG_TEXT = "long_text"


class Columns(NamedTuple):
  """Column names from the flags; None for an absent optional column."""
  id: Optional[str]
  text: str
  text_pair: Optional[str]
  label: Optional[str]



class RowConfig(NamedTuple):
  """How to validate rows.

  labels: the allowed class names, or None to accept (discover) any non-empty label.
  label_map: raw label value -> class name, or None for the identity.
  unescape_html: decode HTML character references in the text(s) (html.unescape).
  """
  labels: Optional[FrozenSet[str]] = None
  label_map: Optional[Dict[str, str]] = None
  multi_label: bool = False
  label_separator: str = "|"
  max_text_chars: int = 100_000
  unescape_html: bool = False


class Row(NamedTuple):
  """A kept row. labels: class names (sorted, unique); () for unlabeled input."""
  example_id: str
  text: str
  text_pair: Optional[str]
  labels: Tuple[str, ...]
  file: str
  line: int
  long_text: bool
  words: int
  chars: int
  excerpt: str


class Rejection(NamedTuple):
  reason: str
  file: str
  line: int
  excerpt: str

  def to_json(self):
    return {"file": self.file, "line": self.line, "reason": self.reason, "excerpt": self.excerpt}


def make_layout(header, columns, path="input"):
  """Finds the flag-named columns in a header; ValueError naming the missing one."""
  hints = {columns.label: " (use --label_column='' for input without labels)"}
  return row_checks.find_columns(header, columns.id, columns.text, columns.text_pair,
                                 columns.label, path, hints)


def content_id(text, text_pair=None):
  """The id of a row without an id column: a hash of its text(s), so repeated texts collide."""
  payload = text if text_pair is None else text + "\x1f" + text_pair
  return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def parse_labels(cell, config):
  """A label cell -> (class names, None) or ((), reason)."""
  if not config.multi_label and config.label_map is None:  # The common case, kept cheap.
    value = cell.strip()
    if not value:
      return (), "missing_label"
    if config.labels is not None and value not in config.labels:
      return (), "unknown_label"
    return (value,), None
  values = cell.split(config.label_separator) if config.multi_label else [cell]
  values = [v.strip() for v in values if v.strip()]
  if not values:
    return (), "missing_label"
  if config.label_map is not None:
    if any(v not in config.label_map for v in values):
      return (), "unknown_label"
    values = [config.label_map[v] for v in values]
  if config.labels is not None and any(v not in config.labels for v in values):
    return (), "unknown_label"
  return tuple(sorted(set(values))), None


def convert_row(record: csv_source.CsvRecord, layout: Layout, config: RowConfig):
  """Validates one CSV record. Returns a Row or a Rejection (never raises on bad data)."""
  def reject(reason):
    return Rejection(reason, record.file, record.line, csv_source.excerpt(record.raw))

  checked = row_checks.check_record(record, layout, config.unescape_html)
  if checked.reason:
    return reject(checked.reason)
  example_id, text, text_pair = checked.example_id, checked.text, checked.text_pair
  labels = ()
  if layout.label is not None:
    labels, reason = parse_labels(record.fields[layout.label], config)
    if reason:
      return reject(reason)
  if layout.id is None:
    example_id = content_id(text, text_pair)

  words = len(text.split()) + (len(text_pair.split()) if text_pair is not None else 0)
  chars = len(text) + (len(text_pair) if text_pair is not None else 0)
  # Cut absurdly long texts before tokenizing: only the first max_seq_length pieces are kept
  # anyway, and a megabyte of text would cost the tokenizer for nothing.
  limit = config.max_text_chars
  long_text = len(text) > limit or (text_pair is not None and len(text_pair) > limit)
  if long_text:
    text = text[:limit]
    text_pair = text_pair[:limit] if text_pair is not None else None
  # Kept rows hold no escaped bytes, so a plain slice is their excerpt (for duplicate_id).
  excerpt = record.raw[:csv_source.EXCERPT_CHARS].rstrip("\r\n")
  return Row(example_id, text, text_pair, labels, record.file, record.line, long_text, words,
             chars, excerpt)


def order_key(example_id, salt):
  """Where a row sits within its shard: a salted hash of its id, never the id itself.

  Shards sorted by id would keep the input's order whenever ids follow it (row numbers,
  database keys of a file sorted by label), and a training stream read through a bounded
  shuffle buffer would then see one label after another. A hash makes every shard a
  pseudo-random, reproducible order whatever the input's order.
  """
  return hashlib.sha1(f"order\x00{salt}\x00{example_id}".encode("utf-8")).digest()[:8]


def assign_split(example_id, salt, train_fraction, validation_fraction, num_shards,
                 from_test_file=False):
  """Deterministic (split, shard) of an example: a SHA-1 of the salted id, never Python's hash().

  from_test_file: the row comes from a --test_input file, so its split is test whatever its
  hash. The shard depends on the id only, so all rows with one id meet in one shard (where
  duplicates are resolved, across splits) and the split never depends on the runner's
  parallelism or batching.
  """
  digest = hashlib.sha1(f"{salt}\x00{example_id}".encode("utf-8")).digest()
  u = int.from_bytes(digest[:8], "big") / 2.0**64
  shard = int.from_bytes(digest[8:16], "big") % num_shards
  if from_test_file:
    return "test", shard
  if u < train_fraction:
    return "train", shard
  if u < train_fraction + validation_fraction:
    return "validation", shard
  return "test", shard
