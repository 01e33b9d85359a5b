"""benchmarks/split_labels.py: the labelled part keeps the whole file's validation and test rows
and a fraction of its training rows; the unlabeled part holds the other training rows."""
import csv
import os

import pytest

from benchmarks import split_labels
from bertcore import schema
from preprocess import run as preprocess_run

WORDS = ["how", "are", "you", "hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog"]


def write_csv(path, n):
  """n rows id,text,target with distinct texts; row 5's text is empty (the job rejects it)."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "text", "target"])
    for i in range(n):
      text = "" if i == 5 else " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 6))
      writer.writerow([f"r{i}", text, i % 2])
  return str(path)


def flags(input_path, output_dir, vocab):
  return [f"--input={input_path}", f"--output_dir={output_dir}", f"--vocab_file={vocab}",
          "--id_column=id", "--text_column=text", "--label_column=target", "--num_shards=2"]


def ids_of(path):
  with open(path, newline="", encoding="utf-8") as f:
    return [row["id"] for row in csv.DictReader(f)]


def split_ids(data_dir, split):
  import tensorflow as tf
  manifest = schema.read_manifest(data_dir)
  files = [os.path.join(data_dir, split, f) for f in manifest.splits[split].shards]
  return sorted(schema.parse_examples(batch)[schema.EXAMPLE_ID].numpy()[0].decode()
                for batch in tf.data.TFRecordDataset(files).batch(1))


def test_the_parts_hold_every_record_once_and_the_cut_grows_with_the_fraction(
    tmp_path, tiny_vocab_file):
  data = write_csv(tmp_path / "all.csv", 400)
  parts = {}
  for fraction in (0.25, 0.5):
    out = tmp_path / str(fraction)
    settings, _ = preprocess_run.parse_settings(flags(data, out, tiny_vocab_file))
    counts = split_labels.split_file(settings, fraction)
    labelled, unlabeled = ids_of(out / "labelled.csv"), ids_of(out / "unlabeled.csv")
    assert counts == {"labelled": len(labelled), "unlabeled": len(unlabeled)}
    assert sorted(labelled + unlabeled, key=lambda i: int(i[1:])) == [f"r{i}" for i in range(400)]
    assert "r5" in labelled   # a rejected row stays where the job rejects it again
    parts[fraction] = set(unlabeled)
  # 80% of the rows train; (1 - fraction) of them are unlabeled: 240 and 160 expected.
  assert 200 < len(parts[0.25]) < 280 and 125 < len(parts[0.5]) < 195
  assert parts[0.5] < parts[0.25]   # one hash: a larger fraction only moves rows to labelled


def test_preprocessed_the_labelled_part_keeps_the_whole_files_evaluation_splits(
    tmp_path, tiny_vocab_file):
  data = write_csv(tmp_path / "all.csv", 120)
  whole, part = tmp_path / "whole", tmp_path / "part"
  preprocess_run.run(flags(data, whole, tiny_vocab_file))
  settings, _ = preprocess_run.parse_settings(flags(data, part, tiny_vocab_file))
  split_labels.split_file(settings, 0.25)
  preprocess_run.run(flags(part / "labelled.csv", part / "data", tiny_vocab_file))
  for split in ("validation", "test"):
    assert split_ids(part / "data", split) == split_ids(whole, split)
  labelled_train, whole_train = split_ids(part / "data", "train"), split_ids(whole, "train")
  assert set(labelled_train) < set(whole_train)
  assert set(labelled_train).isdisjoint(ids_of(part / "unlabeled.csv"))
  assert set(labelled_train) | set(ids_of(part / "unlabeled.csv")) == set(whole_train)


@pytest.mark.parametrize("extra,line", [
    (["--label_column="], "error: give one --input, a --label_column and no --test_input"),
    (["--fraction=1"], "error: --fraction must be in (0, 1), got 1.0"),
])
def test_bad_flags_are_one_line(tmp_path, tiny_vocab_file, capsys, extra, line):
  data = write_csv(tmp_path / "all.csv", 4)
  fraction = [e for e in extra if e.startswith("--fraction")] or ["--fraction=0.5"]
  rest = [e for e in extra if not e.startswith("--fraction")]
  with pytest.raises(SystemExit) as exit_info:
    split_labels.main(fraction + ["--"] + flags(data, tmp_path / "o", tiny_vocab_file) + rest)
  assert str(exit_info.value) == line
