"""benchmarks/bench_search.py: the target comes from the baseline's record, not from a typed figure."""
import json

import pytest

from benchmarks import bench_search


def write_records(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def test_the_target_baseline_is_the_last_tfidf_binary_record(tmp_path):
  path = write_records(tmp_path / "long_text.jsonl", [
      {"model": "tfidf", "task": "binary", "test_main": 0.80},
      {"model": "minilm", "task": "binary", "test_main": 0.85},
      {"model": "tfidf", "task": "3class", "test_main": 0.60},
      {"model": "tfidf", "task": "binary", "test_main": 0.8181}])
  assert bench_search.tfidf_baseline(path) == 0.8181


def test_no_baseline_record_is_one_line(tmp_path):
  path = write_records(tmp_path / "long_text.jsonl", [{"model": "minilm", "task": "binary"}])
  with pytest.raises(SystemExit, match="no tfidf binary record; run benchmarks.bench_long_text"):
    bench_search.tfidf_baseline(path)
