"""Bucket boundaries from the manifest's token-length statistics (train.padding=bucket: TPU,
--config.xla, or asked for; on other runs padding=auto pads each batch to its longest row).

Batches are padded to the smallest bucket length that fits their longest row, so the boundaries
decide how much of each step is padding. Fixed powers of two (16/32/64/128) pad the tweets
(median 33 tokens) to 64 half of the time: 0.68 of the computed tokens are real.

The manifest records, per split, token_length = {mean, p50, p90, p95, p99, max}. From these
we rebuild an approximate length distribution (a piecewise-linear quantile function whose
lowest point is chosen so that its mean equals the recorded mean). The input pipeline sorts
pools of batches by length before cutting them into batches, and pads each batch to its
longest row: so we simulate those pools from the fitted distribution, take each batch's
longest row, and pick the boundaries that minimise the padded tokens of those batches,
exactly, by dynamic programming over lengths that are multiples of `multiple`.

At most 8 lengths, multiples of 8: under XLA (TPU, --config.xla) each new shape is a new
compiled program. (On the CPU without XLA a new shape costs little, and padding each batch to
its longest row was faster than these buckets: bench_step and bench_bucketing in docs/benchmarks.md.)
"""
import numpy as np

PERCENTILES = ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"))
MIN_LENGTH = 2  # [CLS] [SEP]
POOLS = 24      # simulated pools of batches (enough for stable boundaries, ~50k rows)


def length_quantiles(token_length, max_seq_length):
  """(probabilities, lengths) of a piecewise-linear quantile function fitted to the stats.

  Args:
    token_length: dict with mean, p50, p90, p95, p99, max (a manifest split's token_length).
    max_seq_length: the data's max_seq_length (longer rows were truncated to it).
  Returns:
    two float arrays of equal length: increasing probabilities from 0 to 1, and lengths.
  """
  top = float(min(token_length["max"], max_seq_length))
  probs = [p for p, _ in PERCENTILES] + [1.0]
  lengths = [float(min(token_length[k], max_seq_length)) for _, k in PERCENTILES] + [top]
  # Mean of the piecewise-linear quantile = sum of trapezoids; the one from 0 to p50 holds
  # the unknown minimum, which we solve for (and keep between MIN_LENGTH and the median).
  rest = sum((lengths[i] + lengths[i + 1]) / 2 * (probs[i + 1] - probs[i])
             for i in range(len(probs) - 1))
  low = (float(token_length["mean"]) - rest) / (probs[0] / 2) - lengths[0]
  low = min(max(low, MIN_LENGTH), lengths[0])
  return np.array([0.0] + probs), np.array([low] + lengths)


def best_boundaries(lengths, max_seq_length, num_buckets, multiple=8):
  """The <= num_buckets padded lengths (the last max_seq_length) minimising total padding.

  Args:
    lengths: int array of example lengths (each <= max_seq_length).
    num_buckets: how many padded lengths at most.
    multiple: candidate lengths are multiples of it (plus max_seq_length).
  Returns:
    a sorted tuple of ints ending with max_seq_length.
  """
  lengths = np.minimum(np.asarray(lengths), max_seq_length)
  cands = sorted({c for c in range(multiple, max_seq_length, multiple)} | {max_seq_length})
  # counts[j] = examples whose smallest fitting candidate is cands[j].
  counts = np.bincount(np.searchsorted(cands, lengths), minlength=len(cands))
  below = np.concatenate([[0], np.cumsum(counts)])  # below[j] = examples in buckets < j
  m = len(cands)
  inf = float("inf")
  # cost[k][j]: least padded tokens covering candidates 0..j with k boundaries, the last cands[j].
  cost = np.full((num_buckets + 1, m), inf)
  back = np.zeros((num_buckets + 1, m), np.int64)
  for j in range(m):
    cost[1][j] = below[j + 1] * cands[j]
  for k in range(2, num_buckets + 1):
    for j in range(m):
      for i in range(j):
        c = cost[k - 1][i] + (below[j + 1] - below[i + 1]) * cands[j]
        if c < cost[k][j]:
          cost[k][j], back[k][j] = c, i
  k = int(np.argmin(cost[1:, m - 1])) + 1  # ties: the fewest buckets
  out, j = [], m - 1
  while k >= 1:
    out.append(cands[j])
    j, k = back[k][j], k - 1
  return tuple(sorted(set(out)))


def batch_maxima(token_length, max_seq_length, batch_size, pool_batches, pools=POOLS, seed=0):
  """Simulated batches of the input pipeline: pools sorted by length, cut into batches.

  Rows are drawn from the fitted length distribution (seeded, so boundaries are reproducible).
  Returns:
    (longest, real): int array [pools * pool_batches] of each batch's longest row, and float
    array of its real tokens.
  """
  probs, lengths = length_quantiles(token_length, max_seq_length)
  draws = np.random.default_rng(seed).random((pools, pool_batches * batch_size))
  rows = np.sort(np.ceil(np.interp(draws, probs, lengths)), axis=1)
  rows = rows.reshape(pools * pool_batches, batch_size)
  return rows.max(axis=1).astype(np.int64), rows.sum(axis=1)


def batch_padding_efficiency(longest, real, batch_size, boundaries):
  """Real tokens / padded tokens of batches padded to the smallest boundary >= their longest."""
  bounds = np.sort(np.asarray(boundaries))
  padded = bounds[np.minimum(np.searchsorted(bounds, longest), len(bounds) - 1)]
  return float(np.sum(real) / (batch_size * np.maximum(padded, longest)).sum())


def derive_boundaries(token_length, max_seq_length, batch_size=32, pool_batches=64,
                      target_efficiency=0.90, max_buckets=8, multiple=8):
  """Bucket boundaries for a split's recorded token-length statistics.

  The fewest buckets (at most max_buckets) whose padding efficiency on simulated batches
  (batch_maxima) reaches target_efficiency; max_buckets ones if none does.
  Args:
    token_length: manifest.splits[split].token_length (mean, p50, p90, p95, p99, max).
    max_seq_length: manifest.max_seq_length.
    batch_size, pool_batches: rows per step and steps sorted together, as the input
      pipeline batches them (config.train.global_batch_size, input_pipeline.POOL_BATCHES).
  Returns:
    a sorted tuple of ints ending with max_seq_length, for config.train.bucket_boundaries.
  """
  missing = [k for k in ("mean", "max") + tuple(k for _, k in PERCENTILES)
             if k not in token_length]
  if missing:
    raise ValueError(f"token_length statistics lack {', '.join(missing)}; re-run "
                     "preprocessing to record them")
  longest, real = batch_maxima(token_length, max_seq_length, batch_size, pool_batches)
  for n in range(1, max_buckets + 1):
    bounds = best_boundaries(longest, max_seq_length, n, multiple)
    if batch_padding_efficiency(longest, real, batch_size, bounds) >= target_efficiency:
      return bounds
  return bounds
