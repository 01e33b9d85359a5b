"""trainer.buckets: boundaries from the manifest's token-length statistics (exact, tiny)."""
import numpy as np
import pytest

from trainer import buckets

# The real tweets' train split, as its manifest records it (max_seq_length 128).
TWEETS = {"max": 265, "mean": 33.0509, "p50": 33, "p90": 49, "p95": 54, "p99": 61}


def test_quantiles_match_the_recorded_mean():
  stats = {"mean": 12.5, "p50": 10, "p90": 20, "p95": 20, "p99": 20, "max": 20}
  probs, lengths = buckets.length_quantiles(stats, 128)
  # Above p50 the trapezoids hold 0.4 * 15 + 0.1 * 20 = 8; the first must hold 4.5:
  # (low + 10) / 2 * 0.5 = 4.5.
  assert probs.tolist() == [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
  assert lengths.tolist() == pytest.approx([8.0, 10.0, 20.0, 20.0, 20.0, 20.0])


def test_quantiles_clamp_to_max_seq_length_and_minimum_length():
  stats = {"mean": 1.0, "p50": 4, "p90": 6, "p95": 8, "p99": 300, "max": 400}
  _, lengths = buckets.length_quantiles(stats, 64)
  assert lengths.tolist() == [buckets.MIN_LENGTH, 4.0, 6.0, 8.0, 64.0, 64.0]


def test_best_boundaries_minimise_padding():
  lengths = np.array([8] * 10 + [16] * 10 + [30])
  assert buckets.best_boundaries(lengths, 32, 1) == (32,)
  assert buckets.best_boundaries(lengths, 32, 2) == (16, 32)   # 352 padded tokens vs 432
  assert buckets.best_boundaries(lengths, 32, 3) == (8, 16, 32)
  assert buckets.best_boundaries(lengths, 32, 6) == (8, 16, 32)  # more buy nothing


def test_batch_maxima_simulate_sorted_pools():
  longest, real = buckets.batch_maxima(TWEETS, 128, batch_size=32, pool_batches=4, pools=3)
  assert longest.shape == real.shape == (12,)
  # Within a sorted pool each batch's longest row is no shorter than the previous batch's.
  assert all(np.all(np.diff(pool) >= 0) for pool in longest.reshape(3, 4))
  assert np.all(real <= 32 * longest) and np.all(longest <= 128)
  again = buckets.batch_maxima(TWEETS, 128, batch_size=32, pool_batches=4, pools=3)
  assert np.array_equal(again[0], longest)  # seeded: the same boundaries every run


def test_batch_padding_efficiency():
  # Two batches of 2 rows: longest 3 (5 real tokens) and 7 (12 real) padded to 4 and 8.
  assert buckets.batch_padding_efficiency([3, 7], [5, 12], 2, (4, 8)) == pytest.approx(17 / 24)


def test_derive_boundaries_for_the_tweets():
  bounds = buckets.derive_boundaries(TWEETS, 128)
  assert bounds == (16, 24, 32, 40, 48, 56, 64, 128)
  longest, real = buckets.batch_maxima(TWEETS, 128, 32, 64)
  efficiency = lambda b: buckets.batch_padding_efficiency(longest, real, 32, b)
  # Simulated batches of the tweets' lengths.
  assert efficiency(bounds) == pytest.approx(0.883, abs=1e-3)
  assert efficiency((16, 32, 64, 128)) < 0.75
  # Finer lengths pad less (but trained slower, see trainer/buckets.py).
  assert buckets.derive_boundaries(TWEETS, 128, target_efficiency=0.92, max_buckets=12,
                                   multiple=4) == (16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 128)


def test_derive_boundaries_takes_the_fewest_buckets():
  narrow = {"mean": 30.5, "p50": 31, "p90": 32, "p95": 32, "p99": 32, "max": 32}
  assert buckets.derive_boundaries(narrow, 32) == (32,)


def test_missing_statistics_are_one_clear_error():
  with pytest.raises(ValueError, match="lack p99; re-run preprocessing"):
    buckets.derive_boundaries({"mean": 3, "p50": 3, "p90": 3, "p95": 3, "max": 3}, 8)


# Long texts at max_seq_length 512, as a review data set's manifest might record them.
REVIEWS_512 = {"mean": 120.4, "p50": 98, "p90": 251, "p95": 330, "p99": 470, "max": 2048}


def test_derive_boundaries_up_to_512():
  bounds = buckets.derive_boundaries(REVIEWS_512, 512)
  assert bounds == (40, 72, 104, 152, 200, 248, 336, 512)
  assert all(b % 8 == 0 for b in bounds)
  longest, real = buckets.batch_maxima(REVIEWS_512, 512, 32, 64)
  assert longest.max() == 512  # rows over 512 were truncated to it
  assert buckets.batch_padding_efficiency(longest, real, 32, bounds) > 0.8 > (
      buckets.batch_padding_efficiency(longest, real, 32, (64, 128, 256, 512)))
  # Most rows truncated: few shapes, still ending at 512.
  truncated = {"mean": 300.0, "p50": 290, "p90": 500, "p95": 512, "p99": 512, "max": 512}
  assert buckets.derive_boundaries(truncated, 512) == (136, 192, 256, 320, 384, 448, 512)
