"""The CSV/TSV rows that serving.predict and scoring.run score, with preprocessing's rules.

Rows are read by bertcore.csv_source and checked by bertcore.row_checks, the reader and checks
of preprocess.run, then by the export's tokenizer (no word piece at all is empty_text, as
preprocessing's tokenizer decides), so a bad row gets the same reason (malformed_csv,
undecodable, nul_character, wrong_column_count, missing_id, empty_text, duplicate_id) whichever
of the three commands reads it. A rejected row is never dropped: it is an InputRow with its
`problem`, and the output keeps it, with its id, as a row with the reason in `error`.

Serving differs from preprocessing only where it must: it reads no labels; without an id column
the rows are numbered (1-based data rows, the output column `row`) instead of hashed; a repeated
id is a duplicate_id within one input file (the first row by line is scored). Blank lines are
not rows, as in preprocessing.
"""
import hashlib
from typing import NamedTuple, Optional

from bertcore import csv_source
from bertcore import row_checks

ID_HINT = "; pass --id_column= to number the rows instead"
CHUNK_ROWS = 1024  # Rows checked and counted (one tokenizer call) together.


class Columns(NamedTuple):
  """Input column names from the flags; id None numbers the rows instead."""
  id: Optional[str]
  text: str
  text_pair: Optional[str]


class InputRow(NamedTuple):
  """One data row. row_number: its 1-based data row in the file. row_id: the id cell (stripped;
  undecodable bytes as \\xNN), or str(row_number) without an id column. text / text_pair: ""
  when the row has a problem (or no pair column). problem: None or a row_checks reason.
  length: the row's word pieces (text + pair; characters without a counter), the sort key."""
  row_number: int
  row_id: str
  text: str
  text_pair: str
  problem: Optional[str]
  length: int = 0


def find_layout(header, columns, path):
  """The row_checks.Layout of `columns` in a header; ValueError (one line) if one is missing."""
  return row_checks.find_columns(header, columns.id, columns.text, columns.text_pair,
                                 path=path, hints={columns.id: ID_HINT})


def read_layout(path, encoding, delimiter, columns):
  """Reads a file's header -> its Layout; ValueError (one line) for a missing or empty file,
  an unparsable header or a missing column."""
  try:
    header = csv_source.read_header(path, encoding, delimiter)
  except FileNotFoundError:
    raise ValueError(f"input file {path} does not exist") from None
  if header is None:
    raise ValueError(f"{path} is empty: expected a header row")
  return find_layout(header, columns, path)


def check_inputs(patterns, encoding, delimiter, columns):
  """Expands input globs and checks every header; -> the sorted files (ValueError, one line)."""
  files = []
  for path, header in csv_source.matched_files_with_headers(patterns, encoding, delimiter):
    find_layout(header, columns, path)
    files.append(path)
  return files


def iter_rows(path, encoding, delimiter, columns, unescape_html=False, count_pieces=None):
  """Yields an InputRow for every data row of a CSV/TSV file, in file order.

  unescape_html: decode HTML character references in the texts first (as preprocessing's
  --unescape_html; the export cannot do it in-graph). count_pieces: texts, pair texts -> word
  pieces (serving.export_info.WordPieceCounter); with it, a row whose texts have no word piece
  at all (only control characters, say) is empty_text, as preprocessing's tokenizer finds.
  Rows are checked CHUNK_ROWS at a time (one tokenizer call); duplicate_id is decided last, in
  file order, among the rows that passed every other check, as in preprocessing. Keeps one
  16-byte digest per scored id. ValueError (one line) if the header lacks the columns.
  """
  records = csv_source.iter_records(path, encoding, delimiter)
  header = next(records, None)
  if header is None:
    raise ValueError(f"{path} is empty: expected a header row")
  if header.fields is None:
    raise ValueError(f"{path}:{header.line}: cannot parse the header: {header.error}")
  layout = find_layout(header.fields, columns, path)
  seen = set()  # Digests of the ids scored so far.
  chunk = []
  for row_number, record in enumerate(records, 1):
    chunk.append((row_number, row_checks.check_record(record, layout, unescape_html)))
    if len(chunk) == CHUNK_ROWS:
      yield from _finish_chunk(chunk, count_pieces, seen)
      chunk = []
  yield from _finish_chunk(chunk, count_pieces, seen)


def _finish_chunk(chunk, count_pieces, seen):
  """[(row_number, row_checks.Checked)] -> InputRows: word pieces, then duplicate ids."""
  good = [i for i, (_, checked) in enumerate(chunk) if checked.reason is None]
  texts = [chunk[i][1].text for i in good]
  pairs = [chunk[i][1].text_pair or "" for i in good]
  with_pair = any(chunk[i][1].text_pair is not None for i in good)
  if count_pieces is not None:
    lengths = count_pieces(texts, pairs if with_pair else None) if good else []
  else:
    lengths = [len(t) + len(p) for t, p in zip(texts, pairs)]
  length_of = dict(zip(good, lengths))
  for i, (row_number, checked) in enumerate(chunk):
    problem, length = checked.reason, length_of.get(i, 0)
    if problem is None and count_pieces is not None and length == 0:
      problem = "empty_text"  # Only [CLS] and [SEP] would reach the model.
    row_id = str(row_number) if checked.example_id is None else checked.example_id
    if problem is None and checked.example_id is not None:
      digest = hashlib.blake2b(row_id.encode("utf-8"), digest_size=16).digest()
      if digest in seen:
        problem = "duplicate_id"
      seen.add(digest)
    if problem is not None:
      yield InputRow(row_number, row_id, "", "", problem)
    else:
      yield InputRow(row_number, row_id, checked.text, checked.text_pair or "", None, length)
