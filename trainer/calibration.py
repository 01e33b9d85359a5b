"""Temperature scaling and calibration scores: pure numpy (no TensorFlow).

Temperature scaling (Guo et al. 2017) divides the logits by one T > 0 fitted on the validation
split by minimising the negative log-likelihood. Dividing by T is monotone, so rankings (and
argmax) do not change; only how sure the probabilities are.

Logit and label shapes by head (trainer.evaluation's conventions):
  binary      logits [n] or [n, 1] (one sigmoid);  labels int [n] in {0, 1}
  multiclass  logits [n, C] (softmax);              labels int [n] in [0, C)
  multilabel  logits [n, C] (one sigmoid each);     labels multi-hot int [n, C]

Multilabel shares one T across the labels, for two reasons: the package decides multilabel
with one shared threshold (trainer.evaluation sweeps it over all labels together), which stays
meaningful only if the labels' probabilities keep one common scale; and a T per label would be
fitted on the few positives a rare label has in validation, where it overfits.

Scores (lower is better), over the probabilities a head outputs:
  ece    expected calibration error, NUM_BINS equal-width bins of the confidence:
         sum over bins of (rows in bin / n) * |accuracy in bin - mean confidence in bin|.
         binary: the confidence is P(label 1) and the "accuracy" the share of label 1;
         multiclass: top-label (confidence = max probability, accuracy = argmax is right);
         multilabel: every (row, label) decision as one binary prediction, pooled.
  brier  binary: mean (p - y)^2; multiclass: mean over rows of sum over classes of
         (p_c - onehot_c)^2 (0..2); multilabel: mean over (row, label) of (p - y)^2.
  nll    mean negative log-likelihood in nats, from the logits (stable for saturated rows);
         multilabel: mean over (row, label) of the binary cross-entropy.
"""
import math

import numpy as np
from scipy import optimize

NUM_BINS = 15
SCORES = ("ece", "brier", "nll")
# Fewer validation rows than this cannot pin a temperature down.
MIN_ROWS = 20
# The search range of T: far beyond any temperature a fine-tuned classifier needs.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


def _as_binary(head, labels, logits):
  """Binary arrays as [n] (a [n, 1] column accepted)."""
  logits = np.asarray(logits, dtype=np.float64)
  labels = np.asarray(labels)
  if head == "binary":
    logits = logits.reshape(-1)
    labels = labels.reshape(-1)
  return labels.astype(np.int64), logits


def probabilities(logits, head):
  """float64 probabilities of logits (binary [n], otherwise [n, C])."""
  logits = np.asarray(logits, dtype=np.float64)
  if head == "binary":
    logits = logits.reshape(-1)
  if head == "multiclass":
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
  return 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow in exp


def nll(labels, logits, head):
  """Mean negative log-likelihood (nats) of the labels under the logits' probabilities."""
  labels, logits = _as_binary(head, labels, logits)
  if head == "multiclass":
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))
  # -log sigmoid(z) for y = 1, -log sigmoid(-z) for y = 0: softplus(-z * sign).
  signed = np.where(labels == 1, logits, -logits)
  return float(np.mean(np.logaddexp(0.0, -signed)))


def brier(labels, probs, head):
  """The Brier score (see the module docstring for each head's form)."""
  labels, probs = _as_binary(head, labels, probs)
  if head == "multiclass":
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
  return float(np.mean((probs - labels) ** 2))


def _confidence_and_hits(labels, probs, head):
  """(confidence, hit) pairs that ECE and the reliability diagram bin, as flat float arrays."""
  labels, probs = _as_binary(head, labels, probs)
  if head == "multiclass":
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)
  return probs.reshape(-1), labels.reshape(-1).astype(np.float64)


def reliability_bins(labels, probs, head, num_bins=NUM_BINS):
  """Per equal-width bin of [0, 1]: (count, mean confidence, accuracy); empty bins have NaNs.

  A confidence of exactly 1 falls in the last bin; bin i holds [i / B, (i + 1) / B).
  """
  confidence, hits = _confidence_and_hits(labels, probs, head)
  which = np.minimum((confidence * num_bins).astype(np.int64), num_bins - 1)
  counts = np.bincount(which, minlength=num_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_confidence = np.bincount(which, confidence, minlength=num_bins) / counts
    accuracy = np.bincount(which, hits, minlength=num_bins) / counts
  return counts, mean_confidence, accuracy


def ece(labels, probs, head, num_bins=NUM_BINS):
  """Expected calibration error over num_bins equal-width bins (module docstring)."""
  counts, mean_confidence, accuracy = reliability_bins(labels, probs, head, num_bins)
  used = counts > 0
  gaps = np.abs(accuracy[used] - mean_confidence[used])
  return float(np.sum(counts[used] * gaps) / counts.sum())


def scores(labels, logits, head, temperature=1.0):
  """{"ece", "brier", "nll"} of the probabilities of logits / temperature."""
  scaled = np.asarray(logits, dtype=np.float64) / temperature
  probs = probabilities(scaled, head)
  return {"ece": ece(labels, probs, head), "brier": brier(labels, probs, head),
          "nll": nll(labels, scaled, head)}


def unfit_reason(labels, head):
  """Why a split cannot fit a temperature (too few rows, a single class), or None."""
  labels = np.asarray(labels)
  n = labels.shape[0]
  if n < MIN_ROWS:
    return f"{n} validation rows (fewer than {MIN_ROWS})"
  if head == "multiclass":
    one_class = np.unique(labels).size < 2
  else:
    one_class = labels.min() == labels.max()  # all 0 or all 1: any T > 0 is as good
  if one_class:
    return "a single class in the validation labels"
  return None


def fit_temperature(labels, logits, head):
  """The T > 0 minimising nll(labels, logits / T); 1.0 when unfit_reason says it cannot be fitted.

  Returns (temperature, reason): reason is None, or unfit_reason's text when T was kept at 1.
  The NLL is convex in 1 / T and so has one minimum along log T, where a bounded Brent search
  (scipy, already required by scikit-learn) finds it to ~1e-6 relative.
  """
  reason = unfit_reason(labels, head)
  if reason is not None:
    return 1.0, reason
  labels, logits = _as_binary(head, labels, logits)
  result = optimize.minimize_scalar(
      lambda log_t: nll(labels, logits / math.exp(log_t), head), method="bounded",
      bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
      options={"xatol": 1e-7})
  return float(math.exp(result.x)), None
