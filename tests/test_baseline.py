"""The TF-IDF baseline: the same rows and split as the preprocessing job, and a working model."""
import json
import os
import sys

import numpy as np
import pytest

from preprocess import run as run_lib
from trainer import evaluation

# benchmarks/ is not an installed package: import it from the repository root.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import tfidf_baseline  # noqa: E402  pylint: disable=wrong-import-position

# A tweets-like CSV (latin-1, no id column): 30 positive and 30 negative texts told apart by
# one word, a duplicate text with another label (the first row must win), a latin-1 byte.
HEADER = b"sentiment,confidence,text\r\n"


def tweet_rows():
  lines = []
  for i in range(30):
    lines.append(f"positive,1,great lovely flight number {i}\r\n".encode("latin-1"))
    lines.append(f"negative,0.5,awful delayed flight number {i}\r\n".encode("latin-1"))
  lines.append(b"neutral,1,caf\xe9 flight number 3\r\n")      # latin-1 \xe9, kept
  lines.append(b"neutral,1,great lovely flight number 0\r\n")  # duplicate_id: line 2 wins
  return lines


def job_argv(csv_path, out_dir, vocab_file, salt="s"):
  return ["--encoding=latin-1", "--id_column=", "--text_column=text",
          "--label_column=sentiment",
          "--label_map=positive:positive,negative:rest,neutral:rest", "--labels=rest,positive",
          f"--input={csv_path}", f"--output_dir={out_dir}", f"--vocab_file={vocab_file}",
          "--train_fraction=0.5", "--validation_fraction=0.25", "--num_shards=2",
          f"--split_salt={salt}"]


@pytest.fixture(scope="module")
def tweets_csv(tmp_path_factory):
  path = tmp_path_factory.mktemp("baseline") / "tweets.csv"
  path.write_bytes(HEADER + b"".join(tweet_rows()))
  return str(path)


def test_same_rows_and_split_as_the_job(tmp_path, tweets_csv, tiny_vocab_file):
  argv = job_argv(tweets_csv, str(tmp_path / "out"), tiny_vocab_file)
  manifest = run_lib.run(argv)
  dataset = tfidf_baseline.load_dataset(argv)
  assert dataset.labels == ["rest", "positive"]
  assert dataset.rows_read == manifest.rows_read == 62
  assert dataset.rows_rejected == manifest.rows_rejected == {"duplicate_id": 1}
  assert {s: len(dataset.splits[s].ids) for s in ("train", "validation", "test")} == {
      s: manifest.splits[s].rows for s in ("train", "validation", "test")}
  texts = [t for s in dataset.splits.values() for t in s.texts]
  assert "caf\u00e9 flight number 3" in texts
  first = [(s, i) for s, part in dataset.splits.items() for i, t in enumerate(part.texts)
           if t == "great lovely flight number 0"]
  assert len(first) == 1
  split, i = first[0]
  assert dataset.splits[split].label_ids[i] == 1  # positive (line 2), not the neutral repeat
  tfidf_baseline.check_against_data_dir(dataset, str(tmp_path / "out"))  # ids + labels agree

  other = tfidf_baseline.load_dataset(job_argv(tweets_csv, "unused", tiny_vocab_file, "salt2"))
  with pytest.raises(ValueError, match="baseline rows differ"):
    tfidf_baseline.check_against_data_dir(other, str(tmp_path / "out"))


def test_binary_baseline_separates_by_the_telling_word(tweets_csv):
  dataset = tfidf_baseline.load_dataset(job_argv(tweets_csv, "unused", "unused"))
  result = tfidf_baseline.run_baseline(dataset, "binary", cs=(1.0, 4.0),
                                       class_weights=(None, "balanced"))
  assert result["label_names"] == ["rest", "positive"]
  assert len(result["grid"]) == 4
  summary = result["summary"]
  assert summary["test_f1"] == 1.0
  assert summary["test_pr_auc"] == 1.0
  assert summary["validation_threshold"] == result["validation"]["best_threshold"]
  labels, scores = result["test_outputs"]  # the scores the test metrics came from
  assert len(labels) == len(dataset.splits["test"].ids) == len(scores)
  assert evaluation.compute_metrics(labels, scores, "binary", ["rest", "positive"])["pr_auc"] == 1.0
  # The vocabulary comes from the training rows only (1-2-grams seen at least twice there).
  assert "lovely" in tfidf_baseline.make_vectorizer().fit(
      dataset.splits["train"].texts).vocabulary_
  assert result["vocabulary_size"] == len(tfidf_baseline.make_vectorizer().fit(
      dataset.splits["train"].texts).vocabulary_)


def test_multiclass_baseline_and_f1_at():
  texts = {0: "awful delayed", 1: "flight today", 2: "great lovely"}
  splits = {}
  for split, n in (("train", 20), ("validation", 6), ("test", 6)):
    y = np.arange(n * 3) % 3
    splits[split] = tfidf_baseline.SplitRows(
        [f"{split}{i}" for i in range(len(y))], [f"{texts[c]} {i}" for i, c in enumerate(y)], y)
  dataset = tfidf_baseline.Dataset(["negative", "neutral", "positive"], splits, 96, {})
  result = tfidf_baseline.run_baseline(dataset, "multiclass", cs=(1.0,), class_weights=(None,))
  assert result["summary"]["test_macro_f1"] == 1.0
  assert result["summary"]["test_accuracy"] == 1.0
  assert result["test"]["confusion_matrix"] == [[6, 0, 0], [0, 6, 0], [0, 0, 6]]
  sweep = {"threshold_sweep": {"thresholds": [0.29, 0.3], "f1": [0.5, 0.7]}}
  assert tfidf_baseline.f1_at(sweep, 0.1 + 0.2) == 0.7  # 0.30000000000000004 finds 0.3


def test_test_input_tsv_same_rows_and_split_as_the_job(tmp_path, tiny_vocab_file):
  """TSV with HTML entities; a --test_input file; a train row repeating a test row."""
  header = "id\treview\trating\n"
  train = [f"t{i}\t\"great &quot;lovely&quot;\nflight {i}\"\tpositive\n" for i in range(12)]
  train += [f"n{i}\tawful delayed flight {i}\tnegative\n" for i in range(12)]
  train.append("dup\tthe same review\tpositive\n")  # Same id as a test row: rejected.
  test = ["dup\tthe same review\tnegative\n", "x1\tgreat flight\tpositive\n"]
  (tmp_path / "train.tsv").write_text(header + "".join(train))
  (tmp_path / "test.tsv").write_text(header + "".join(test))
  argv = ["--delimiter=tab", "--unescape_html=true", "--id_column=id",
          "--text_column=review", "--label_column=rating", f"--vocab_file={tiny_vocab_file}",
          f"--input={tmp_path / 'train.tsv'}", f"--test_input={tmp_path / 'test.tsv'}",
          f"--output_dir={tmp_path / 'out'}", "--validation_fraction=0.25", "--num_shards=2"]
  manifest = run_lib.run(argv)
  dataset = tfidf_baseline.load_dataset(argv)
  assert dataset.rows_rejected == manifest.rows_rejected == {"duplicate_id": 1}
  assert sorted(dataset.splits["test"].ids) == ["dup", "x1"]
  assert dataset.splits["test"].label_ids.tolist()[dataset.splits["test"].ids.index("dup")] == 0
  assert len(dataset.splits["train"].ids) + len(dataset.splits["validation"].ids) == 24
  assert 'great "lovely"\nflight 0' in dataset.splits["train"].texts + (
      dataset.splits["validation"].texts)
  tfidf_baseline.check_against_data_dir(dataset, str(tmp_path / "out"))
  # The training copy of the test row is the one rejected; the manifest names files by role.
  rejected = [json.loads(line) for line in open(tmp_path / "out" / "rejected.jsonl")]
  assert [(r["file"], r["line"], r["reason"]) for r in rejected] == [
      (str(tmp_path / "train.tsv"), 38, "duplicate_id")]
  assert manifest.input_files == [str(tmp_path / "train.tsv")]
  assert manifest.test_input_files == [str(tmp_path / "test.tsv")]
  assert (manifest.delimiter, manifest.unescape_html) == ("\t", True)
  assert manifest.splits["test"].rows == 2
