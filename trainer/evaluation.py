"""Classification metrics, the F1 threshold sweep and the evaluation plots.

Pure functions on numpy arrays (no TensorFlow in the metrics): the training loop collects
labels and probabilities over the validation split and calls `compute_metrics`, whose result
is JSON-able and goes to eval_results.json, TensorBoard and W&B.

Label and probability shapes by head (the same conventions as the exported model's outputs):
  binary      labels int [n] in {0, 1};         probs float [n] = P(label 1)  ([n, 1] accepted)
  multiclass  labels int [n] in [0, C);         probs float [n, C], rows sum to 1 (softmax)
  multilabel  labels multi-hot int [n, C];      probs float [n, C], one sigmoid per label

A thresholded prediction is `prob >= threshold`, compared in float32, exactly as the exported
serving signature does it, so that a tuned threshold means the same thing in both places.
"""
import io
import posixpath
import warnings

import numpy as np
import tensorflow as tf
from sklearn import metrics as skm

from bertcore.names import check_head

DEFAULT_THRESHOLD = 0.5
# 0.01, 0.02, ..., 0.99: rounded so that the JSON shows 0.29, not 0.29000000000000004.
SWEEP_THRESHOLDS = tuple(round(i / 100, 2) for i in range(1, 100))

PR_CURVE_PNG = "pr_curve.png"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"


def compute_metrics(labels, probs, head, label_names, loss=None):
  """Metrics of one evaluation pass.

  Args:
    labels: see the module docstring for the shape per head.
    probs: see the module docstring.
    head: "binary" | "multiclass" | "multilabel".
    label_names: the class names, label id = index (2 names for binary).
    loss: optional mean loss over the pass, copied into the result.
  Returns:
    A JSON-able dict (floats, ints, lists, None; never NaN):
      loss (only when given), num_examples, label_names,
      accuracy        binary/multiclass: fraction correct; multilabel: exact-match (subset)
                      accuracy, plus `hamming_accuracy` (fraction of correct label decisions),
      precision, recall, f1
                      binary: of class 1 at threshold 0.5; multiclass: macro averages;
                      multilabel: micro averages at threshold 0.5,
      macro_precision, macro_recall, macro_f1    multiclass and multilabel,
      micro_precision, micro_recall, micro_f1    multilabel,
      pr_auc          average precision; multiclass/multilabel: macro over classes (one vs rest),
      roc_auc         same averaging; None when undefined (a class never or always present),
      per_class       multiclass/multilabel: {name: {precision, recall, f1, support, pr_auc,
                      roc_auc}},
      confusion_matrix  binary/multiclass: [C][C] counts, rows = true, columns = predicted;
                      multilabel: [C][2][2], per label [[tn, fp], [fn, tp]],
      threshold_sweep binary/multilabel: {"thresholds": [0.01..0.99], "precision": [...],
                      "recall": [...], "f1": [...]} (multilabel: micro, one shared threshold);
                      multiclass: None,
      best_threshold, best_f1
                      the F1-best threshold of the sweep (ties go to the one nearest 0.5) and
                      its F1; multiclass: None and the macro F1 (so that "best by validation
                      F1" reads `best_f1` for every head),
      best_confusion_matrix  binary/multilabel: confusion_matrix at best_threshold, which is
                      what the exported model (using the tuned threshold) will do.
    Macro averages over AUCs skip classes where the AUC is undefined; None if all are.
  """
  labels, probs, names = _check_inputs(labels, probs, head, label_names)
  n = int(labels.shape[0])
  result = {}
  if loss is not None:
    result["loss"] = _num(loss)
  result["num_examples"] = n
  result["label_names"] = names
  if head == "binary":
    result.update(_binary_metrics(labels, probs))
  elif head == "multiclass":
    result.update(_multiclass_metrics(labels, probs, names))
  else:
    result.update(_multilabel_metrics(labels, probs, names))
  return result


def _check_inputs(labels, probs, head, label_names):
  """Validates and normalises the arrays; raises ValueError with one clear line."""
  check_head(head)
  names = [str(x) for x in label_names]
  labels = np.asarray(labels)
  probs = np.asarray(probs, dtype=np.float64)
  if head == "binary":
    if len(names) != 2:
      raise ValueError(f"a binary head needs 2 label names, got {len(names)}")
    if probs.ndim == 2 and probs.shape[1] == 1:
      probs = probs[:, 0]
    if labels.ndim == 2 and labels.shape[1] == 1:
      labels = labels[:, 0]
    if labels.ndim != 1 or probs.shape != labels.shape:
      raise ValueError(f"binary: labels must be [n] and probs [n], got {labels.shape} and "
                       f"{probs.shape}")
    if labels.size and not np.isin(labels, (0, 1)).all():
      raise ValueError("binary: labels must be 0 or 1")
  elif head == "multiclass":
    if labels.ndim != 1 or probs.ndim != 2 or probs.shape != (labels.shape[0], len(names)):
      raise ValueError(f"multiclass: labels must be [n] and probs [n, {len(names)}], got "
                       f"{labels.shape} and {probs.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
      raise ValueError(f"multiclass: labels must be in [0, {len(names)})")
  else:
    if labels.ndim != 2 or labels.shape != probs.shape or labels.shape[1] != len(names):
      raise ValueError(f"multilabel: labels and probs must both be [n, {len(names)}], got "
                       f"{labels.shape} and {probs.shape}")
    if labels.size and not np.isin(labels, (0, 1)).all():
      raise ValueError("multilabel: labels must be multi-hot (0 or 1)")
  if labels.shape[0] == 0:
    raise ValueError("no examples to evaluate")
  if not np.isfinite(probs).all():
    raise ValueError("probabilities contain NaN or infinity")
  return labels.astype(np.int64), probs, names


def _num(x):
  """A JSON-safe float: NaN / inf become None."""
  x = float(x)
  return x if np.isfinite(x) else None


def _predict(probs, threshold):
  # float32 on both sides, as in the exported model: a prob of exactly float32(0.29) then
  # counts as positive at threshold 0.29 in both places.
  return (probs.astype(np.float32) >= np.float32(threshold)).astype(np.int64)


def _prf(labels, preds, average=None):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # zero_division=0 already decides the undefined cases.
    p, r, f, _ = skm.precision_recall_fscore_support(
        labels, preds, average=average, zero_division=0)
  return p, r, f


def _average_precision(y, score):
  """AP of one binary problem; None when there is no positive (AP is undefined then)."""
  if y.sum() == 0:
    return None
  return _num(skm.average_precision_score(y, score))


def _roc_auc(y, score):
  """ROC-AUC of one binary problem; None unless both classes occur."""
  if y.min() == y.max():
    return None
  return _num(skm.roc_auc_score(y, score))


def _mean_defined(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _sweep(labels, probs, average):
  """Precision / recall / F1 at each threshold of SWEEP_THRESHOLDS and the F1-best one."""
  precision, recall, f1 = [], [], []
  for t in SWEEP_THRESHOLDS:
    p, r, f = _prf(labels, _predict(probs, t), average=average)
    precision.append(float(p))
    recall.append(float(r))
    f1.append(float(f))
  best_f1 = max(f1)
  # Many thresholds can tie (e.g. well separated scores); take the tie nearest 0.5, the
  # untuned default, rather than an extreme one that happens to come first.
  ties = [t for t, f in zip(SWEEP_THRESHOLDS, f1) if f == best_f1]
  best = min(ties, key=lambda t: (abs(t - DEFAULT_THRESHOLD), t))
  sweep = {"thresholds": list(SWEEP_THRESHOLDS), "precision": precision, "recall": recall,
           "f1": f1}
  return sweep, best, best_f1


def _binary_metrics(labels, probs):
  preds = _predict(probs, DEFAULT_THRESHOLD)
  p, r, f = _prf(labels, preds, average="binary")
  sweep, best, best_f1 = _sweep(labels, probs, average="binary")
  return {
      "accuracy": float(np.mean(preds == labels)),
      "precision": float(p), "recall": float(r), "f1": float(f),
      "pr_auc": _average_precision(labels, probs),
      "roc_auc": _roc_auc(labels, probs),
      "confusion_matrix": skm.confusion_matrix(labels, preds, labels=[0, 1]).tolist(),
      "threshold_sweep": sweep, "best_threshold": best, "best_f1": best_f1,
      "best_confusion_matrix": skm.confusion_matrix(
          labels, _predict(probs, best), labels=[0, 1]).tolist(),
  }


def _per_class(names, p, r, f, support, pr_aucs, roc_aucs):
  return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                 "support": int(support[i]), "pr_auc": pr_aucs[i], "roc_auc": roc_aucs[i]}
          for i, name in enumerate(names)}


def _multiclass_metrics(labels, probs, names):
  num_classes = len(names)
  preds = probs.argmax(axis=1)
  onehot = np.eye(num_classes, dtype=np.int64)[labels]
  class_ids = list(range(num_classes))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    p, r, f, support = skm.precision_recall_fscore_support(
        labels, preds, labels=class_ids, average=None, zero_division=0)
  pr_aucs = [_average_precision(onehot[:, c], probs[:, c]) for c in class_ids]
  roc_aucs = [_roc_auc(onehot[:, c], probs[:, c]) for c in class_ids]
  macro_f1 = float(np.mean(f))
  return {
      "accuracy": float(np.mean(preds == labels)),
      "precision": float(np.mean(p)), "recall": float(np.mean(r)), "f1": macro_f1,
      "macro_precision": float(np.mean(p)), "macro_recall": float(np.mean(r)),
      "macro_f1": macro_f1,
      "pr_auc": _mean_defined(pr_aucs), "roc_auc": _mean_defined(roc_aucs),
      "per_class": _per_class(names, p, r, f, support, pr_aucs, roc_aucs),
      "confusion_matrix": skm.confusion_matrix(labels, preds, labels=class_ids).tolist(),
      # Argmax has no threshold to tune.
      "threshold_sweep": None, "best_threshold": None, "best_f1": macro_f1,
  }


def _multilabel_metrics(labels, probs, names):
  preds = _predict(probs, DEFAULT_THRESHOLD)
  micro_p, micro_r, micro_f = _prf(labels, preds, average="micro")
  p, r, f = _prf(labels, preds, average=None)
  support = labels.sum(axis=0)
  class_ids = range(len(names))
  pr_aucs = [_average_precision(labels[:, c], probs[:, c]) for c in class_ids]
  roc_aucs = [_roc_auc(labels[:, c], probs[:, c]) for c in class_ids]
  sweep, best, best_f1 = _sweep(labels, probs, average="micro")
  return {
      "accuracy": float(np.mean((preds == labels).all(axis=1))),
      "hamming_accuracy": float(np.mean(preds == labels)),
      "precision": float(micro_p), "recall": float(micro_r), "f1": float(micro_f),
      "micro_precision": float(micro_p), "micro_recall": float(micro_r),
      "micro_f1": float(micro_f),
      "macro_precision": float(np.mean(p)), "macro_recall": float(np.mean(r)),
      "macro_f1": float(np.mean(f)),
      "pr_auc": _mean_defined(pr_aucs), "roc_auc": _mean_defined(roc_aucs),
      "per_class": _per_class(names, p, r, f, support, pr_aucs, roc_aucs),
      "confusion_matrix": skm.multilabel_confusion_matrix(labels, preds).tolist(),
      "threshold_sweep": sweep, "best_threshold": best, "best_f1": best_f1,
      "best_confusion_matrix": skm.multilabel_confusion_matrix(
          labels, _predict(probs, best)).tolist(),
  }


# ------------------------------------------------------------------------------------------
# Plots


def save_plots(labels, probs, head, label_names, out_dir):
  """Writes a precision-recall curve and a confusion matrix as PNG files.

  Rendered with matplotlib's Agg canvas into memory, then written through tf.io.gfile, so
  out_dir may be a gs:// path. The confusion matrix is at threshold 0.5 (argmax for
  multiclass), like `compute_metrics`' confusion_matrix.
  Returns:
    The paths written: [<out_dir>/pr_curve.png, <out_dir>/confusion_matrix.png].
  """
  labels, probs, names = _check_inputs(labels, probs, head, label_names)
  tf.io.gfile.makedirs(out_dir)
  paths = []
  for filename, draw in ((PR_CURVE_PNG, _draw_pr_curve), (CONFUSION_MATRIX_PNG, _draw_confusion)):
    figure = _new_figure()
    draw(figure, labels, probs, head, names)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    path = posixpath.join(out_dir, filename)
    with tf.io.gfile.GFile(path, "wb") as f:
      f.write(buffer.getvalue())
    paths.append(path)
  return paths


def _new_figure():
  # A bare Figure on the Agg canvas: no pyplot global state, no display needed.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(figsize=(6, 5))
  FigureCanvasAgg(figure)
  return figure


def _draw_pr_curve(figure, labels, probs, head, names):
  ax = figure.add_subplot()
  if head == "binary":
    curves = [(names[1], labels, probs)]
  else:
    onehot = labels if head == "multilabel" else np.eye(len(names), dtype=np.int64)[labels]
    curves = [(name, onehot[:, c], probs[:, c]) for c, name in enumerate(names)]
  drawn = 0
  for name, y, score in curves:
    if y.sum() == 0:
      continue  # No positives: the curve is undefined.
    precision, recall, _ = skm.precision_recall_curve(y, score)
    ap = skm.average_precision_score(y, score)
    ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
    drawn += 1
  if drawn == 0:
    ax.text(0.5, 0.5, "undefined: no positive examples", ha="center", va="center")
  elif drawn <= 20:
    ax.legend(loc="lower left", fontsize="small")
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.set_title(f"Precision-recall ({len(labels)} examples)")


def _draw_confusion(figure, labels, probs, head, names):
  ax = figure.add_subplot()
  if head == "multilabel":
    preds = _predict(probs, DEFAULT_THRESHOLD)
    matrix = skm.multilabel_confusion_matrix(labels, preds).reshape(len(names), 4)
    rows, columns = names, ["TN", "FP", "FN", "TP"]
    ax.set_xlabel("per label, threshold 0.5")
    ax.set_ylabel("label")
  else:
    preds = _predict(probs, DEFAULT_THRESHOLD) if head == "binary" else probs.argmax(axis=1)
    matrix = skm.confusion_matrix(labels, preds, labels=list(range(len(names))))
    rows, columns = names, names
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
  image = ax.imshow(matrix, cmap="Blues", vmin=0)
  figure.colorbar(image, ax=ax)
  ax.set_xticks(range(len(columns)), labels=columns, rotation=45, ha="right")
  ax.set_yticks(range(len(rows)), labels=rows)
  if matrix.size <= 400:  # Numbers stay readable up to ~20 x 20.
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
      ax.text(j, i, str(count), ha="center", va="center",
              color="white" if count > threshold else "black")
  ax.set_title("Confusion matrix")


def save_reliability_plot(curves, head, path):
  """Writes a reliability diagram, one panel per split, to path (PNG, through tf.io.gfile).

  curves: {split: {curve name: (counts, mean confidence, accuracy)}} per equal-width bin, as
  trainer.calibration.reliability_bins returns them (empty bins have NaNs and are skipped).
  Returns path.
  """
  figure = _new_figure()
  figure.set_size_inches(5 * max(1, len(curves)), 5)
  axes = figure.subplots(1, max(1, len(curves)), squeeze=False)[0]
  what = {"binary": ("P(label 1)", "share of label 1"),
          "multiclass": ("top-label confidence", "accuracy"),
          "multilabel": ("P(label), every label", "share of label")}[head]
  for ax, (split, by_name) in zip(axes, curves.items()):
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, (counts, confidence, accuracy) in by_name.items():
      used = counts > 0
      ax.plot(confidence[used], accuracy[used], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(what[0])
    ax.set_ylabel(what[1])
    ax.set_title(f"Reliability: {split}")
    ax.legend(loc="upper left", fontsize="small")
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
  tf.io.gfile.makedirs(posixpath.dirname(path))
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(buffer.getvalue())
  return path
