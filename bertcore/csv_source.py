"""Streams the records of one CSV or TSV file, with the line each record starts on.

The one CSV reader of the package: preprocess.run, serving.predict and scoring.run all read
their input through it (the row checks that follow are bertcore.row_checks).

The file is opened through Beam's FileSystems (local paths, gs://, ...; see open_binary) and
parsed with Python's csv module, so quoted fields may hold commas, quotes ("") and newlines; CRLF
and a UTF-8 BOM are handled. Bytes that the encoding cannot decode do not stop the file: they are
decoded with `surrogateescape` (each bad byte becomes a lone surrogate U+DC80..U+DCFF), and the
row that holds them is rejected later as `undecodable` (see bertcore.row_checks).
"""
import codecs
import csv
import gzip
import io
import re
import sys
from typing import Iterator, List, NamedTuple, Optional

from bertcore import env

# Quiet: Beam logs its missing cloud extras on import (see env.quiet_optional_imports).
with env.quiet_optional_imports():
  from apache_beam.io.filesystem import CompressionTypes
  from apache_beam.io.filesystems import FileSystems

# Python's csv refuses fields over 128 KiB by default; a 1 MB text is valid (and counted as
# long_text later). The limit still guards against an unterminated quote eating a huge file.
MAX_FIELD_CHARS = 256 * 1024 * 1024
csv.field_size_limit(min(sys.maxsize, MAX_FIELD_CHARS))

EXCERPT_CHARS = 200
_SURROGATE = re.compile("[\udc80-\udcff]")


class CsvRecord(NamedTuple):
  """One CSV record as read.

  file: the source path. line: the 1-based line number where the record starts (a record with
  quoted newlines spans several lines). fields: the decoded cells, or None when the csv module
  could not parse the record (`error` says why). raw: the record's text (for dead-letter excerpts).
  """
  file: str
  line: int
  fields: Optional[List[str]]
  raw: str
  error: Optional[str] = None


def python_codec(encoding):
  """Maps the --encoding flag to a Python codec; UTF-8 input may start with a BOM."""
  try:
    name = codecs.lookup(encoding).name
  except LookupError:
    raise ValueError(f"unknown --encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
  return "utf-8-sig" if name in ("utf-8", "utf-8-sig") else name


def excerpt(raw, limit=EXCERPT_CHARS):
  """A printable start of a record: undecodable bytes shown as \\xNN, line ending dropped."""
  text = raw[:limit].rstrip("\r\n")
  return _SURROGATE.sub(lambda m: "\\x%02x" % (ord(m.group()) - 0xDC00), text)


class _GFileRaw(io.RawIOBase):
  """A tf.io.gfile.GFile as a raw binary stream, for io.BufferedReader / TextIOWrapper."""

  def __init__(self, gfile):
    super().__init__()
    self._gfile = gfile

  def readable(self):
    return True

  def readinto(self, buffer):
    data = self._gfile.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def close(self):
    self._gfile.close()
    super().close()


def open_binary(path):
  """Opens `path` for reading bytes: through Beam's FileSystems where Beam has the scheme (local,
  gs:// with apache-beam[gcp], ...), else through tf.io.gfile (schemes only TensorFlow has, e.g.
  ram://; gs:// without Beam's GCS extra, for serving.predict)."""
  try:
    FileSystems.get_filesystem(path)
  except ValueError:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"{path} does not exist") from None
    return io.BufferedReader(_GFileRaw(tf.io.gfile.GFile(path, "rb")))
  return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_text(path, encoding):
  """Opens `path` (gzip if it ends in .gz) as text decoded with `encoding` + surrogateescape."""
  raw = open_binary(path)
  if path.endswith(".gz"):
    raw = gzip.GzipFile(fileobj=raw, mode="rb")
  # newline="" hands the csv module the line endings untouched (it needs them for CRLF and
  # for newlines inside quoted fields).
  return io.TextIOWrapper(raw, encoding=python_codec(encoding), errors="surrogateescape",
                          newline="")


def iter_records(path, encoding, delimiter=",") -> Iterator[CsvRecord]:
  """Yields every non-blank record of the file, the header first.

  delimiter: the one field-separator character (cli.parse_delimiter); quoting is the same for
  every delimiter, so a quoted TSV field may hold tabs and newlines.

  Blank lines (no cells at all) are not records: they are skipped, but still counted for the
  line numbers of the records after them.
  """
  with open_text(path, encoding) as f:
    lines = []  # The raw lines of the record being parsed.

    def tee():
      for text_line in f:
        lines.append(text_line)
        yield text_line

    reader = csv.reader(tee(), delimiter=delimiter)
    next_line = 1
    while True:
      try:
        fields, error = next(reader), None
      except StopIteration:
        return
      except csv.Error as e:  # Parsing resumes at the next line.
        fields, error = None, str(e)
      raw = "".join(lines)
      start, next_line = next_line, next_line + len(lines)
      lines.clear()
      if fields == [] and error is None:
        continue
      yield CsvRecord(path, start, fields, raw, error)


def read_header(path, encoding, delimiter=","):
  """Returns the stripped column names of the file's first record, or None for an empty file."""
  for record in iter_records(path, encoding, delimiter):
    if record.fields is None:
      raise ValueError(f"{path}:{record.line}: cannot parse the header: {record.error}")
    return [name.strip() for name in record.fields]
  return None


def progress_size(path):
  """The size in bytes that `encoded_size` counts up to, or None for gzip input (unknown)."""
  if path.endswith(".gz"):
    return None
  metadata = FileSystems.match([path])[0].metadata_list
  return metadata[0].size_in_bytes if metadata else None


def encoded_size(records, encoding):
  """The bytes the records took in the file (for progress): their text, encoded back."""
  codec = python_codec(encoding)
  codec = "utf-8" if codec == "utf-8-sig" else codec  # The BOM is not in the records.
  return len("".join(r.raw for r in records).encode(codec, "surrogateescape"))


def check_filesystems(paths):
  """Raises ValueError, one line naming the extra to install, if Beam cannot read a gs:// path.

  Beam registers its GCS filesystem only when the optional extra is installed; without it, it
  would fail on the first gs:// path with a generic message.
  """
  for path in paths:
    if path.startswith("gs://"):
      try:
        FileSystems.get_filesystem(path)
      except ValueError:
        raise ValueError(f'{path}: reading gs:// paths needs Beam\'s GCS support: '
                         f'pip install "apache-beam[gcp]"') from None
      return


def match_files(patterns):
  """Expands glob patterns (local or remote) to a sorted, de-duplicated list of files."""
  results = FileSystems.match(list(patterns))
  return sorted({m.path for result in results for m in result.metadata_list})


def matched_files_with_headers(patterns, encoding, delimiter=","):
  """Expands the input globs; yields (path, header) for each file, in sorted path order.

  Raises ValueError with one line if nothing matches or a file has no header row. The caller
  checks the header's columns, since each job needs different ones.
  """
  paths = match_files(patterns)
  if not paths:
    raise ValueError(f"no input files match {', '.join(patterns)}")
  for path in paths:
    header = read_header(path, encoding, delimiter)
    if header is None:
      raise ValueError(f"{path} is empty: every input file needs a header row")
    yield path, header
