"""Data recipes (configs/data/*.args) and the demo data locator, on a slice of the real tweets."""
import os

import pytest

from preprocess import datasets
from preprocess import run as run_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe(name):
  return "@" + os.path.join(REPO, "configs", "data", name)


def test_recipe_flags():
  args, rest = run_lib.make_parser().parse_known_args(
      [recipe("tweets_binary.args"), "--input=x.csv", "--output_dir=o", "--vocab_file=v"])
  assert rest == []
  assert (args.encoding, args.id_column, args.text_column, args.label_column) == (
      "latin-1", "", "text", "sentiment")
  assert run_lib.parse_label_map(args.label_map) == {
      "positive": "positive", "negative": "rest", "neutral": "rest"}
  assert args.labels == "rest,positive"
  args, _ = run_lib.make_parser().parse_known_args(
      [recipe("tweets_3class.args"), "--input=x.csv", "--output_dir=o", "--labels=a,b"])
  assert (args.labels, args.label_map) == ("a,b", "")  # Later flags override the recipe.


def test_unknown_dataset():
  with pytest.raises(ValueError, match="unknown data set 'nope'"):
    datasets.dataset_path("nope")


def test_binary_recipe_on_real_tweets(tmp_path, tiny_vocab_file):
  try:
    path = datasets.dataset_path("tweets")
  except ValueError as e:
    pytest.skip(str(e))
  with open(path, "rb") as f:
    lines = f.read().split(b"\r\n")
  # The header + every 95th tweet (the file is sorted by sentiment) = 402 tweets, all classes.
  (tmp_path / "tweets.csv").write_bytes(b"\r\n".join([lines[0]] + lines[1::95]))
  manifest = run_lib.run([recipe("tweets_binary.args"), f"--input={tmp_path / 'tweets.csv'}",
                          f"--output_dir={tmp_path / 'out'}", f"--vocab_file={tiny_vocab_file}",
                          "--num_shards=1"])
  assert manifest.labels == ["rest", "positive"]
  assert manifest.encoding == "latin-1"
  assert manifest.rows_read == 402
  assert manifest.rows_read == manifest.rows_written + manifest.rows_rejected_total
  assert set(manifest.rows_rejected) <= {"duplicate_id"}
  with open(tmp_path / "out" / "rejected.jsonl") as f:  # Written even when empty.
    assert len(f.readlines()) == manifest.rows_rejected_total
  positives = sum(s.label_histogram["positive"] for s in manifest.splits.values())
  rest = sum(s.label_histogram["rest"] for s in manifest.splits.values())
  assert positives + rest == manifest.rows_written
  assert 0.1 < positives / manifest.rows_written < 0.3


def test_zip_member_is_extracted_once_and_atomically(tmp_path):
  import zipfile
  archive = tmp_path / "data.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("a.tsv", "x\ty\n1\t2\n")
  cache = tmp_path / "cache"
  path = datasets.extract_member(str(archive), "a.tsv", str(cache))
  assert path == str(cache / "a.tsv") and open(path).read() == "x\ty\n1\t2\n"
  mtime = os.stat(path).st_mtime_ns
  assert datasets.extract_member(str(archive), "a.tsv", str(cache)) == path
  assert os.stat(path).st_mtime_ns == mtime  # Reused, not rewritten.
  assert os.listdir(cache) == ["a.tsv"]      # No temporary file left behind.
  (cache / "a.tsv").write_text("cut")         # A partial file from elsewhere is replaced.
  assert open(datasets.extract_member(str(archive), "a.tsv", str(cache))).read().endswith("2\n")


def test_drugreview_recipes_on_the_real_files(tmp_path, tiny_vocab_file):
  try:
    train = datasets.dataset_path("drugreviews-train", cache=str(tmp_path / "cache"))
    test = datasets.dataset_path("drugreviews-test", cache=str(tmp_path / "cache"))
  except ValueError as e:
    pytest.skip(str(e))
  manifest = run_lib.run([recipe("drugreviews_3class.args"), f"--input={train}",
                          f"--test_input={test}", f"--output_dir={tmp_path / 'out'}",
                          f"--vocab_file={tiny_vocab_file}", "--num_shards=1"])
  # 600 + 379 rows, multi-line quoted reviews included; one training review repeats a test one.
  assert (manifest.rows_read, manifest.rows_written, manifest.rows_rejected) == (
      979, 978, {"duplicate_id": 1})
  assert manifest.splits["test"].rows == 379
  assert manifest.splits["train"].rows + manifest.splits["validation"].rows == 599
  assert manifest.labels == ["negative", "neutral", "positive"]
  assert (manifest.delimiter, manifest.unescape_html) == ("\t", True)
  assert manifest.splits["test"].label_histogram == {"negative": 95, "neutral": 36,
                                                      "positive": 248}
  args, _ = run_lib.make_parser().parse_known_args(
      [recipe("drugreviews_binary.args"), "--input=x", "--output_dir=o", "--vocab_file=v"])
  assert run_lib.make_settings(args).labels == ("rest", "positive")
