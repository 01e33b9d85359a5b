"""CSV reading: quoting, line endings, BOM, encodings, undecodable bytes, line numbers."""
import csv
import gzip

import pytest

from bertcore import csv_source


def records(tmp_path, data, encoding="utf-8", name="in.csv"):
  path = tmp_path / name
  path.write_bytes(data)
  return [(r.line, r.fields) for r in csv_source.iter_records(str(path), encoding)]


def test_quoted_comma_quote_and_newline(tmp_path):
  data = b'a,b\n1,"x, y"\n2,"she said ""hi"""\n3,"two\nlines"\n4,z\n'
  assert records(tmp_path, data) == [
      (1, ["a", "b"]), (2, ["1", "x, y"]), (3, ["2", 'she said "hi"']),
      (4, ["3", "two\nlines"]), (6, ["4", "z"])]


def test_crlf_and_bom(tmp_path):
  data = b'\xef\xbb\xbfa,b\r\n1,"p\r\nq"\r\n2,r\r\n'
  assert records(tmp_path, data) == [(1, ["a", "b"]), (2, ["1", "p\r\nq"]), (4, ["2", "r"])]


def test_header_has_no_bom(tmp_path):
  path = tmp_path / "bom.csv"
  path.write_bytes(b"\xef\xbb\xbf qid ,text\n")
  assert csv_source.read_header(str(path), "utf-8") == ["qid", "text"]


def test_latin1(tmp_path):
  assert records(tmp_path, b"a\ncaf\xe9 \xd1\n", encoding="latin-1") == [
      (1, ["a"]), (2, ["caf\u00e9 \u00d1"])]


def test_undecodable_bytes_become_surrogates_and_reading_goes_on(tmp_path):
  got = records(tmp_path, b"a\nbad \xff\xfe\ngood\n")
  assert got == [(1, ["a"]), (2, ["bad \udcff\udcfe"]), (3, ["good"])]
  assert csv_source.excerpt("bad \udcff\n") == "bad \\xff"


def test_blank_lines_are_skipped_but_counted(tmp_path):
  assert records(tmp_path, b"a\n\n1\n\r\n2") == [(1, ["a"]), (3, ["1"]), (5, ["2"])]


def test_gzip_input(tmp_path):
  assert records(tmp_path, gzip.compress(b"a,b\n1,2\n"), name="in.csv.gz") == [
      (1, ["a", "b"]), (2, ["1", "2"])]


def test_a_csv_error_is_a_record_and_reading_goes_on(tmp_path, monkeypatch):
  limit = csv.field_size_limit()
  try:
    csv.field_size_limit(10)
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"y" * 20 + b"\nok\n")
    got = list(csv_source.iter_records(str(path), "utf-8"))
  finally:
    csv.field_size_limit(limit)
  assert [(r.line, r.fields, r.error is not None) for r in got] == [
      (1, ["a"], False), (2, None, True), (3, ["ok"], False)]


def test_raw_text_of_a_record(tmp_path):
  path = tmp_path / "raw.csv"
  path.write_bytes(b'a,b\r\n1,"x\r\ny"\r\n')
  assert [r.raw for r in csv_source.iter_records(str(path), "utf-8")] == [
      "a,b\r\n", '1,"x\r\ny"\r\n']


def test_unknown_encoding():
  with pytest.raises(ValueError, match="unknown --encoding"):
    csv_source.python_codec("klingon")


def test_match_files_sorted(tmp_path):
  for name in ("b.csv", "a.csv", "c.txt"):
    (tmp_path / name).write_text("x\n")
  assert csv_source.match_files([str(tmp_path / "*.csv")]) == [
      str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
  assert csv_source.match_files([str(tmp_path / "none*.csv")]) == []


def test_tsv_with_quoted_tabs_and_newlines(tmp_path):
  path = tmp_path / "in.tsv"
  path.write_bytes(b'a\tb\n1\t"x\ty"\n2\t"two\r\nlines"\n3\tcomma, kept\n')
  got = [(r.line, r.fields) for r in csv_source.iter_records(str(path), "utf-8", "\t")]
  assert got == [(1, ["a", "b"]), (2, ["1", "x\ty"]), (3, ["2", "two\r\nlines"]),
                 (5, ["3", "comma, kept"])]
  assert csv_source.read_header(str(path), "utf-8", "\t") == ["a", "b"]
