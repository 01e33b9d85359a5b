"""The checks every CSV/TSV row passes, and the one set of reasons a row is rejected for.

preprocess.run, serving.predict and scoring.run read rows through bertcore.csv_source and check
them here, so one bad row gets the same reason whichever command reads it: in preprocessing's
rejected.jsonl and manifest, in predict's output and summary, in scoring's output and manifest.
Pure functions, no I/O.

REJECT_REASONS, in the order the checks run (the first failure is the reason):
  malformed_csv       the csv module could not parse the record
  undecodable         bytes the --encoding cannot decode
  nul_character       a NUL (\\x00) anywhere in the record
  wrong_column_count  more or fewer cells than the file's header
  missing_id          the id cell is empty or whitespace (only with an --id_column)
  empty_text          the text (or the pair text) is empty or whitespace
  missing_label       the label cell is empty or whitespace (preprocessing, with a label column)
  unknown_label       the label is not in --labels / --label_map (preprocessing)
  duplicate_id        a kept row repeats the id of an earlier kept row: the first one by
                      (file, line) wins (preprocessing: across all input files; predict and
                      scoring: within an input file)
The label checks are preprocessing's own (serving reads no labels); the others apply to all.
"""
import html
from typing import NamedTuple, Optional

REJECT_REASONS = ("malformed_csv", "undecodable", "nul_character", "wrong_column_count",
                  "missing_id", "empty_text", "missing_label", "unknown_label", "duplicate_id")


class Layout(NamedTuple):
  """Where the columns are in one file (from its header); None for an absent optional one."""
  num_columns: int
  id: Optional[int]
  text: int
  text_pair: Optional[int]
  label: Optional[int] = None


class Checked(NamedTuple):
  """A record after the shared checks.

  reason: None (the row passed) or one of REJECT_REASONS. example_id: the stripped id cell
  (None without an id column; "" when it cannot be read); on a rejected row it is shown with
  undecodable bytes as \\xNN. text / text_pair: the cells (html-unescaped if asked), "" on a
  rejected row; text_pair None without a pair column.
  """
  example_id: Optional[str]
  text: str
  text_pair: Optional[str]
  reason: Optional[str]


def find_columns(header, id_column, text_column, text_pair_column=None, label_column=None,
                 path="input", hints=None):
  """The Layout of the named columns in a header; ValueError (one line) naming a missing one.

  Column names are compared stripped. hints: {column name: text appended to its error}.
  """
  names = [name.strip() for name in header]
  for name in (id_column, text_column, text_pair_column, label_column):
    if name and name not in names:
      hint = (hints or {}).get(name, "")
      raise ValueError(f"{path}: column {name!r} is not in the header {names}{hint}")
  index = lambda name: names.index(name) if name else None  # noqa: E731
  return Layout(len(names), index(id_column), names.index(text_column),
                index(text_pair_column), index(label_column))


def has_undecodable(text):
  """True if `text` holds bytes the encoding could not decode (csv_source's lone surrogates)."""
  return not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text)


def _shown(cell):
  """A cell as output shows it: undecodable bytes as \\xNN."""
  return "".join("\\x%02x" % (ord(ch) - 0xDC00) if "\udc80" <= ch <= "\udcff" else ch
                 for ch in cell)


def check_record(record, layout, unescape_html=False):
  """Runs the shared checks on one bertcore.csv_source.CsvRecord -> Checked (never raises).

  unescape_html: decode HTML character references in the text(s) first (preprocessing's
  --unescape_html), so "&#32;" is an empty text.
  """
  fields = record.fields

  def reject(reason):
    cell = (fields[layout.id] if fields is not None and layout.id is not None
            and layout.id < len(fields) else "")
    return Checked(_shown(cell.strip()) if layout.id is not None else None, "",
                   None if layout.text_pair is None else "", reason)

  if fields is None:
    return reject("malformed_csv")
  joined = "\x1f".join(fields)
  if has_undecodable(joined):
    return reject("undecodable")
  if "\x00" in joined:
    return reject("nul_character")
  if len(fields) != layout.num_columns:
    return reject("wrong_column_count")
  example_id = fields[layout.id].strip() if layout.id is not None else None
  if layout.id is not None and not example_id:
    return reject("missing_id")
  text = fields[layout.text]
  text_pair = fields[layout.text_pair] if layout.text_pair is not None else None
  if unescape_html:  # Before the empty check: "&#32;" is an empty text.
    text = html.unescape(text)
    text_pair = html.unescape(text_pair) if text_pair is not None else None
  if not text.strip() or (text_pair is not None and not text_pair.strip()):
    return reject("empty_text")
  return Checked(example_id, text, text_pair, None)
