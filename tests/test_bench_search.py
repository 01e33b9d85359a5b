"""benchmarks/bench_search.py: the target is the TF-IDF baseline computed on the search's own rows,
not a typed figure."""
import types

import pytest

from benchmarks import bench_search, tfidf_baseline
from preprocess import datasets


@pytest.fixture
def fake_baseline(monkeypatch):
  """tfidf_baseline with the reading, the check and the fit recorded instead of run."""
  calls = {}
  monkeypatch.setattr(datasets, "dataset_path", lambda name: f"/data/{name}.tsv")
  monkeypatch.setattr(tfidf_baseline, "load_dataset",
                      lambda argv: calls.setdefault("argv", argv) and types.SimpleNamespace())
  monkeypatch.setattr(tfidf_baseline, "check_against_data_dir",
                      lambda dataset, data_dir: calls.setdefault("checked", data_dir))
  monkeypatch.setattr(tfidf_baseline, "run_baseline", lambda dataset, head: calls.setdefault(
      "head", head) and {"summary": {"test_f1": 0.8182, "test_pr_auc": 0.9}})
  return calls


def test_the_target_is_the_baseline_on_the_data_dirs_own_rows(fake_baseline):
  assert bench_search.tfidf_test_f1("/runs/data/drugreviews_binary") == 0.8182
  assert fake_baseline["argv"] == [
      f"@{bench_search.RECIPE}", "--input=/data/drugreviews-train.tsv",
      "--test_input=/data/drugreviews-test.tsv", "--vocab_file=unused"]
  assert fake_baseline["checked"] == "/runs/data/drugreviews_binary"
  assert fake_baseline["head"] == "binary"


def test_rows_that_differ_from_the_data_dir_are_one_error_line(fake_baseline, monkeypatch):
  def differ(dataset, data_dir):
    raise ValueError("test: baseline rows differ from /d: 1 only in the baseline")
  monkeypatch.setattr(tfidf_baseline, "check_against_data_dir", differ)
  with pytest.raises(SystemExit, match="^error: the TF-IDF baseline: test: baseline rows differ"):
    bench_search.tfidf_test_f1("/d")
