"""The long-text benchmark's pure helpers: settings parsing and the bootstrap deviation."""
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_long_text  # noqa: E402  pylint: disable=wrong-import-position


def test_settings_parse_and_refuse_malformed_items():
  assert bench_long_text.parse_settings("128:head, 256:head_tail") == [
      (128, "head"), (256, "head_tail")]
  with pytest.raises(ValueError, match="<max_seq_length>:<truncation>"):
    bench_long_text.parse_settings("head:128")


def test_bootstrap_sd_is_zero_for_perfect_predictions_and_near_theory_otherwise():
  labels = np.array([0, 1] * 200)
  perfect = labels.astype(np.float32)
  assert bench_long_text.bootstrap_sd(labels, perfect, "binary", 0.5, samples=200) == 0.0
  # Coin-flip scores: F1 of ~0.5 whose spread over 400 resampled rows is a few hundredths.
  rng = np.random.default_rng(0)
  noisy = rng.random(len(labels)).astype(np.float32)
  sd = bench_long_text.bootstrap_sd(labels, noisy, "binary", 0.5, samples=300)
  assert 0.01 < sd < 0.06


def test_bootstrap_sd_multiclass_uses_macro_f1():
  labels = np.array([0, 1, 2] * 50)
  probs = np.eye(3, dtype=np.float32)[labels]
  assert bench_long_text.bootstrap_sd(labels, probs, "multiclass", None, samples=50) == 0.0
  probs[::4] = np.float32(1 / 3)  # ties: argmax picks class 0 for every fourth row
  assert bench_long_text.bootstrap_sd(labels, probs, "multiclass", None, samples=50) > 0.0
