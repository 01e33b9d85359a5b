"""Pure row validation and split assignment."""
import collections

import pytest

from bertcore import csv_source
from preprocess import rows

COLUMNS = rows.Columns(id="qid", text="question_text", text_pair=None, label="target")
LAYOUT = rows.make_layout(["qid", "question_text", "target"], COLUMNS)
BINARY = rows.RowConfig(labels=frozenset({"0", "1"}))


def convert(fields, config=BINARY, layout=LAYOUT, raw=None):
  raw = raw if raw is not None else ",".join(fields) + "\n"
  return rows.convert_row(csv_source.CsvRecord("f.csv", 7, fields, raw), layout, config)


def reason(fields, config=BINARY, layout=LAYOUT):
  result = convert(fields, config, layout)
  return result.reason if isinstance(result, rows.Rejection) else None


def test_valid_row():
  row = convert(["q1", "How are  you?", " 1 "])
  assert row == rows.Row("q1", "How are  you?", None, ("1",), "f.csv", 7, False, 3, 13,
                         "q1,How are  you?, 1 ")


@pytest.mark.parametrize("fields,expected", [
    (["q", "t", "1.0"], "unknown_label"),   # Labels are strings: "1.0" is not "1".
    (["q", "t", "yes"], "unknown_label"),
    (["q", "t", " "], "missing_label"),
    (["q", "t", ""], "missing_label"),
    (["q", " \t", "1"], "empty_text"),
    (["q", "", "1"], "empty_text"),
    (["", "t", "1"], "missing_id"),
    (["q", "t"], "wrong_column_count"),
    (["q", "t", "1", "x"], "wrong_column_count"),
    (["q", "a\x00b", "1"], "nul_character"),
    (["q", "bad \udcff", "1"], "undecodable"),
    (["q", "bad \udcff", "1", "x"], "undecodable"),  # The first failing check is the reason.
    (["q", "fine", " 0"], None),
])
def test_reasons(fields, expected):
  assert reason(fields) == expected


def test_malformed_record():
  record = csv_source.CsvRecord("f.csv", 3, None, "x\udcff\n", "field larger than field limit")
  assert rows.convert_row(record, LAYOUT, BINARY) == rows.Rejection(
      "malformed_csv", "f.csv", 3, "x\\xff")


def test_discovered_labels_accept_any_value():
  assert convert(["q", "t", "1.0"], rows.RowConfig()).labels == ("1.0",)


def test_label_map():
  config = rows.RowConfig(labels=frozenset({"rest", "positive"}),
                          label_map={"positive": "positive", "negative": "rest", "neutral": "rest"})
  assert convert(["q", "t", "neutral"], config).labels == ("rest",)
  assert convert(["q", "t", " positive"], config).labels == ("positive",)
  assert reason(["q", "t", "mixed"], config) == "unknown_label"


def test_multi_label():
  config = rows.RowConfig(labels=frozenset({"a", "b", "c"}), multi_label=True)
  assert convert(["q", "t", "c| a|a"], config).labels == ("a", "c")
  assert reason(["q", "t", "a|d"], config) == "unknown_label"
  assert reason(["q", "t", " | "], config) == "missing_label"


def test_unlabeled_and_content_ids():
  columns = rows.Columns(id=None, text="text", text_pair="pair", label=None)
  layout = rows.make_layout(["pair", "text"], columns)
  row = convert(["second", "first"], rows.RowConfig(), layout)
  assert row.labels == ()
  assert (row.text, row.text_pair) == ("first", "second")
  assert row.example_id == rows.content_id("first", "second")
  assert row.example_id != rows.content_id("first")
  assert len(row.example_id) == 40
  assert reason(["", "first"], rows.RowConfig(), layout) == "empty_text"


def test_long_text_is_cut_and_counted():
  row = convert(["q", "ab " * 10, "1"], rows.RowConfig(labels=frozenset({"1"}), max_text_chars=5))
  assert (row.text, row.long_text, row.words, row.chars) == ("ab ab", True, 10, 30)


def test_make_layout_names_the_missing_column():
  with pytest.raises(ValueError, match=r"f.csv: column 'target' is not in the header "
                                       r"\['qid', 'text'\] \(use --label_column=''"):
    rows.make_layout(["qid", "text"], rows.Columns("qid", "text", None, "target"), "f.csv")


def test_assign_split_is_deterministic_and_follows_fractions():
  ids = [f"id{i}" for i in range(20000)]
  got = [rows.assign_split(i, "salt", 0.1, 0.009, 16) for i in ids]
  assert got == [rows.assign_split(i, "salt", 0.1, 0.009, 16) for i in ids]
  counts = collections.Counter(split for split, _ in got)
  assert 1800 < counts["train"] < 2200 and 120 < counts["validation"] < 240
  assert counts["train"] + counts["validation"] + counts["test"] == 20000
  assert {shard for _, shard in got} == set(range(16))
  # Fixed values (SHA-1 of "bert-tf-finetune\0q1" -> u=0.4134, shard 13), so that a change of
  # hashing, which would silently move examples between splits, is noticed.
  assert [rows.assign_split(f"q{i}", "bert-tf-finetune", 0.8, 0.1, 16) for i in range(6)] == [
      ("train", 7), ("train", 13), ("train", 13), ("train", 14), ("train", 4), ("test", 12)]
  # Another salt reshuffles.
  other = [rows.assign_split(i, "pepper", 0.1, 0.009, 16) for i in ids]
  assert 0.15 < sum(a[0] != b[0] for a, b in zip(got, other)) / len(ids) < 0.22


def test_unescape_html_before_checks_ids_and_counts():
  config = rows.RowConfig(labels=frozenset({"0", "1"}), unescape_html=True)
  row = convert(["q", "I didn&#039;t &quot;like&quot; it &amp; more", "1"], config)
  assert row.text == 'I didn\'t "like" it & more'
  assert (row.words, row.chars) == (6, 25)
  assert convert(["q", "&#039;", "1"]).text == "&#039;"  # Off by default.
  assert reason(["q", "&#32;&nbsp;", "1"], config) == "empty_text"
  no_id = rows.make_layout(["question_text", "target"], rows.Columns(None, "question_text", None,
                                                                     "target"))
  assert convert(["it&#039;s", "1"], config, no_id).example_id == rows.content_id("it's")


def test_rows_of_a_test_file_go_to_test_with_the_same_shard():
  for i in range(50):
    split, shard = rows.assign_split(f"id{i}", "salt", 0.8, 0.2, 4, from_test_file=True)
    assert (split, shard) == ("test", rows.assign_split(f"id{i}", "salt", 0.8, 0.2, 4)[1])
  # With --test_input, --input rows use train_fraction = 1 - validation_fraction: never test.
  assert {rows.assign_split(f"id{i}", "salt", 0.8, 0.2, 4)[0] for i in range(200)} == {
      "train", "validation"}
