"""trainer.evaluation: metrics against hand-computed tiny cases, and the plots."""
import json

import pytest

from trainer import evaluation  # Imports bertcore first: Keras 2 before TensorFlow.

import numpy as np
import tensorflow as tf


def test_binary_hand_computed():
  # probs sorted: 0.7 (neg), 0.6 (pos), 0.4 (pos), 0.2 (neg).
  labels = [0, 1, 1, 0]
  probs = [0.2, 0.6, 0.4, 0.7]
  m = evaluation.compute_metrics(labels, probs, "binary", ["no", "yes"], loss=0.25)
  assert m["loss"] == 0.25
  assert m["num_examples"] == 4
  assert m["label_names"] == ["no", "yes"]
  # At 0.5: predictions [0, 1, 0, 1] -> TN 1, FP 1, FN 1, TP 1.
  assert m["confusion_matrix"] == [[1, 1], [1, 1]]
  assert m["accuracy"] == 0.5
  assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
  # AP = mean of the precision at each positive: (1/2 + 2/3) / 2.
  assert m["pr_auc"] == pytest.approx(7 / 12)
  # Positive-over-negative pairs: 0.6 > 0.2, 0.4 > 0.2 win; both lose to 0.7.
  assert m["roc_auc"] == pytest.approx(0.5)
  # Any threshold in (0.2, 0.4] predicts [0, 1, 1, 1]: TP 2, FP 1, F1 = 4 / 5; ties go to the
  # one nearest 0.5, which is 0.4 (0.4 >= float32(0.4) counts as positive).
  assert m["best_threshold"] == 0.4
  assert m["best_f1"] == pytest.approx(0.8)
  assert m["best_confusion_matrix"] == [[1, 1], [0, 2]]
  sweep = m["threshold_sweep"]
  assert sweep["thresholds"][0] == 0.01 and sweep["thresholds"][-1] == 0.99
  assert len(sweep["thresholds"]) == len(sweep["f1"]) == 99
  f1_at = dict(zip(sweep["thresholds"], sweep["f1"]))
  assert f1_at[0.1] == pytest.approx(2 * 2 / (2 * 2 + 2))  # All positive: P 1/2, R 1.
  assert f1_at[0.41] == pytest.approx(0.5)
  assert f1_at[0.99] == 0.0  # Nothing predicted positive: zero_division=0, no crash.


def test_binary_accepts_column_probs():
  flat = evaluation.compute_metrics([0, 1], [0.3, 0.8], "binary", ["0", "1"])
  column = evaluation.compute_metrics([0, 1], [[0.3], [0.8]], "binary", ["0", "1"])
  assert flat == column
  assert flat["f1"] == 1.0 and flat["roc_auc"] == 1.0


def test_single_class_auc_is_none_not_a_crash():
  m = evaluation.compute_metrics([1, 1, 1], [0.2, 0.9, 0.6], "binary", ["0", "1"])
  assert m["roc_auc"] is None
  assert m["pr_auc"] == 1.0  # Every example is positive: precision 1 everywhere.
  m = evaluation.compute_metrics([0, 0], [0.2, 0.9], "binary", ["0", "1"])
  assert m["roc_auc"] is None and m["pr_auc"] is None
  assert m["f1"] == 0.0 and m["accuracy"] == 0.5
  json.dumps(m, allow_nan=False)


def test_multiclass_hand_computed():
  labels = [0, 1, 2, 2]
  probs = [[0.7, 0.2, 0.1],
           [0.1, 0.8, 0.1],
           [0.2, 0.5, 0.3],   # true 2, predicted 1
           [0.1, 0.1, 0.8]]
  m = evaluation.compute_metrics(labels, probs, "multiclass", ["a", "b", "c"])
  assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
  assert m["accuracy"] == 0.75
  # Per class P/R: a 1/1, b 1/2 and 1/1, c 1/1 and 1/2.
  assert m["precision"] == pytest.approx((1 + 0.5 + 1) / 3)
  assert m["recall"] == pytest.approx((1 + 1 + 0.5) / 3)
  assert m["macro_f1"] == m["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
  assert m["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                 "support": 1, "pr_auc": 1.0, "roc_auc": 1.0}
  assert m["threshold_sweep"] is None and m["best_threshold"] is None
  assert m["best_f1"] == m["macro_f1"]


def test_multiclass_auc_skips_absent_class():
  # Class "c" never occurs: its one-vs-rest AUCs are undefined and left out of the macro mean.
  labels = [0, 1, 0, 1]
  probs = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3], [0.5, 0.4, 0.1]]
  m = evaluation.compute_metrics(labels, probs, "multiclass", ["a", "b", "c"])
  assert m["per_class"]["c"]["roc_auc"] is None and m["per_class"]["c"]["pr_auc"] is None
  # a: positives {0.6, 0.3} vs negatives {0.2, 0.5}: 3 of 4 pairs won. b: {0.7, 0.4} vs
  # {0.3, 0.4}: 0.7 wins both, 0.4 beats 0.3 and ties 0.4 -> 3.5 / 4.
  assert m["per_class"]["a"]["roc_auc"] == pytest.approx(0.75)
  assert m["per_class"]["b"]["roc_auc"] == pytest.approx(0.875)
  assert m["roc_auc"] == pytest.approx((0.75 + 0.875) / 2)
  json.dumps(m, allow_nan=False)


def test_multilabel_hand_computed():
  labels = [[1, 0], [0, 1], [1, 1]]
  probs = [[0.9, 0.2], [0.3, 0.6], [0.6, 0.4]]
  m = evaluation.compute_metrics(labels, probs, "multilabel", ["x", "y"])
  # At 0.5 predictions [[1,0],[0,1],[1,0]]: the last row misses "y".
  assert m["accuracy"] == pytest.approx(2 / 3)          # exact match
  assert m["hamming_accuracy"] == pytest.approx(5 / 6)  # label decisions
  # Micro: TP 3, FP 0, FN 1.
  assert (m["precision"], m["recall"]) == (1.0, 0.75)
  assert m["f1"] == m["micro_f1"] == pytest.approx(6 / 7)
  assert m["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
  assert m["confusion_matrix"] == [[[1, 0], [0, 2]], [[1, 0], [1, 1]]]
  # 0.4 is the largest threshold catching y's 0.4 while rejecting x's 0.3 -> micro F1 1;
  # the tied thresholds are (0.3, 0.4], and 0.4 is nearest 0.5.
  assert m["best_threshold"] == 0.4 and m["best_f1"] == 1.0
  assert m["per_class"]["y"]["support"] == 2
  assert m["pr_auc"] == 1.0 and m["roc_auc"] == 1.0


def test_result_is_json_able():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, size=50)
  probs = rng.random(50).astype(np.float32)
  m = evaluation.compute_metrics(labels, probs, "binary", ["0", "1"], loss=np.float32(0.7))
  assert json.loads(json.dumps(m, allow_nan=False)) == m


@pytest.mark.parametrize("labels,probs,head,names,message", [
    ([0, 1], [0.1, 0.2], "softmax", ["0", "1"], "head must be one of"),
    ([0, 2], [0.1, 0.2], "binary", ["0", "1"], "labels must be 0 or 1"),
    ([0, 1], [0.1, 0.2, 0.3], "binary", ["0", "1"], "binary: labels must be"),
    ([0, 1], [[0.5, 0.5], [0.5, 0.5]], "multiclass", ["a", "b", "c"], "probs [n, 3]"),
    ([], [], "binary", ["0", "1"], "no examples"),
    ([0, 1], [0.1, float("nan")], "binary", ["0", "1"], "NaN"),
])
def test_bad_inputs_raise_one_line(labels, probs, head, names, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[")):
    evaluation.compute_metrics(labels, probs, head, names)


@pytest.mark.parametrize("head,labels,probs,names", [
    ("binary", [0, 1, 1, 0], [0.2, 0.6, 0.4, 0.7], ["0", "1"]),
    ("multiclass", [0, 1, 2], [[.7, .2, .1], [.1, .8, .1], [.2, .5, .3]], ["a", "b", "c"]),
    ("multilabel", [[1, 0], [0, 0], [1, 0]], [[.9, .2], [.3, .6], [.6, .4]], ["x", "y"]),
])
def test_save_plots_writes_pngs(tmp_path, head, labels, probs, names):
  out_dir = str(tmp_path / "plots" / "epoch_1")  # Missing directories are created.
  paths = evaluation.save_plots(labels, probs, head, names, out_dir)
  assert [p.rsplit("/", 1)[1] for p in paths] == ["pr_curve.png", "confusion_matrix.png"]
  for path in paths:
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_save_plots_goes_through_gfile():
  # ram:// is TensorFlow's in-memory file system; plain open() could not write there.
  paths = evaluation.save_plots([0, 1], [0.3, 0.8], "binary", ["0", "1"], "ram://eval/plots")
  assert paths == ["ram://eval/plots/pr_curve.png", "ram://eval/plots/confusion_matrix.png"]
  for path in paths:
    with tf.io.gfile.GFile(path, "rb") as f:
      assert f.read(4) == b"\x89PNG"
