r"""The classical baseline: TF-IDF (word 1-2-grams) + logistic regression, on the job's own split.

  python -m benchmarks.tfidf_baseline @configs/data/tweets_binary.args \
      --input="$(python -m preprocess.datasets tweets)" --vocab_file=unused [--data_dir=<job output>]
  python -m benchmarks.tfidf_baseline @configs/data/drugreviews_binary.args \
      --input="$(python -m preprocess.datasets drugreviews-train)" \
      --test_input="$(python -m preprocess.datasets drugreviews-test)" --vocab_file=unused

Given the preprocessing job's own flags (its parser wants a vocabulary flag; the baseline never
reads it), the rows are read, validated, deduplicated and split by the job's own code, so the
baseline trains on exactly the fine-tuned model's rows; --data_dir checks that against a written
data directory, id by id. C and class_weight are chosen on validation, and so is a binary
task's decision threshold; the metrics are trainer.evaluation.compute_metrics', the trainer's own.
"""
import argparse
import collections
import json
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

import bertcore  # noqa: F401  (Keras 2 + version check before TensorFlow loads)
from benchmarks import export_split_ids
from benchmarks.common import f1_at
from bertcore import csv_source
from bertcore import schema
from preprocess import job
from preprocess import rows
from preprocess import run as preprocess_run
from trainer import evaluation

import tensorflow as tf
from sklearn import feature_extraction
from sklearn import linear_model

DEFAULT_CS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
DEFAULT_CLASS_WEIGHTS = (None, "balanced")


class SplitRows(NamedTuple):
  """The kept rows of one split, in (file, line) order."""
  ids: List[str]
  texts: List[str]
  label_ids: np.ndarray  # int64 [n]: indices into `labels`


class Dataset(NamedTuple):
  labels: List[str]
  splits: Dict[str, SplitRows]
  rows_read: int
  rows_rejected: Dict[str, int]


def load_dataset(preprocess_argv: Sequence[str]) -> Dataset:
  """The rows and splits `python -m preprocess.run <preprocess_argv>` would write (Beam options
  ignored, --output_dir optional); label names in the job's label-id order."""
  argv = list(preprocess_argv)
  if not any(a.startswith("--output_dir") for a in argv):
    argv.append("--output_dir=unused")
  args, _ = preprocess_run.make_parser().parse_known_args(argv)
  s = preprocess_run.make_settings(args)
  if s.row_config.multi_label:
    raise ValueError("the baseline handles single-label tasks only")
  if s.columns.label is None:
    raise ValueError("the baseline needs labelled input (a --label_column)")
  input_files, test_files = job.check_input_roles(
      s.input_patterns, s.test_input_patterns, s.encoding, s.columns, s.delimiter)

  kept = {}  # example_id -> (Row, from a --test_input file): the first by (file, line), as the job
  seen_labels, rejected, rows_read = set(), collections.Counter(), 0
  # The job's file order: test files, then the others, each sorted; records in line order.
  for path in test_files + input_files:
    records = csv_source.iter_records(path, s.encoding, s.delimiter)
    layout = rows.make_layout(next(records).fields, s.columns, path)
    for record in records:
      rows_read += 1
      result = rows.convert_row(record, layout, s.row_config)
      if isinstance(result, rows.Rejection):
        rejected[result.reason] += 1
        continue
      seen_labels.update(result.labels)   # the job's labels: every valid row's, duplicates too
      if result.example_id in kept:
        rejected["duplicate_id"] += 1
      else:
        kept[result.example_id] = (result, path in test_files)
  labels = list(s.labels) if s.labels is not None else sorted(seen_labels)
  index = {name: i for i, name in enumerate(labels)}

  parts = {split: ([], [], []) for split in schema.SPLITS}
  for row, from_test_file in kept.values():
    split, _ = rows.assign_split(row.example_id, s.split_salt, s.train_fraction,
                                 s.validation_fraction, s.num_shards, from_test_file=from_test_file)
    ids, texts, label_ids = parts[split]
    ids.append(row.example_id)
    # A pair task joins the two texts; TF-IDF has no notion of segments.
    texts.append(row.text if row.text_pair is None else row.text + " \n " + row.text_pair)
    label_ids.append(index[row.labels[0]])
  splits = {s: SplitRows(ids, texts, np.asarray(y, dtype=np.int64))
            for s, (ids, texts, y) in parts.items()}
  return Dataset(labels, splits, rows_read, dict(sorted(rejected.items())))


def check_against_data_dir(dataset: Dataset, data_dir):
  """Raises ValueError unless the job's output holds exactly these ids and labels per split."""
  manifest = schema.read_manifest(data_dir)
  if list(manifest.labels) != list(dataset.labels):
    raise ValueError(f"labels differ: baseline {dataset.labels}, {data_dir} {manifest.labels}")
  for split in schema.SPLITS:
    ours = dict(zip(dataset.splits[split].ids, dataset.splits[split].label_ids.tolist()))
    arrays = export_split_ids.read_split(data_dir, split, manifest)   # labels: the label ids
    written = dict(zip(arrays["example_ids"].tolist(), arrays["labels"].tolist()))
    if ours != written:
      only_ours, only_theirs = len(set(ours) - set(written)), len(set(written) - set(ours))
      relabelled = sum(1 for k in set(ours) & set(written) if ours[k] != written[k])
      raise ValueError(f"{split}: baseline rows differ from {data_dir}: {only_ours} only in the "
                       f"baseline, {only_theirs} only in the data dir, {relabelled} relabelled")


def make_vectorizer():
  # Word 1-2-grams as the issue asks; sublinear tf and min_df=2 are the usual strong defaults
  # for short texts (a 1-2-gram seen once in training cannot help on test).
  return feature_extraction.text.TfidfVectorizer(
      ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)


def _scores(model, x, head, positive_index):
  probs = model.predict_proba(x)
  return probs[:, list(model.classes_).index(positive_index)] if head == "binary" else probs


def run_baseline(dataset: Dataset, head: str, positive_label: Optional[str] = None,
                 cs=DEFAULT_CS, class_weights=DEFAULT_CLASS_WEIGHTS, seed=0):
  """Fits on train, picks (C, class_weight) on validation, evaluates on test.

  Args:
    dataset: from load_dataset.
    head: "binary" (positive vs rest: `positive_label`, default labels[1]) or "multiclass".
    cs, class_weights: the grid searched on validation.
  Returns:
    A JSON-able dict (chosen params, the grid, `validation` and `test` metrics, their `summary`,
    `seconds`), plus `test_outputs`: the test split's (labels, scores) as numpy arrays.
  """
  start = time.time()
  if head not in ("binary", "multiclass"):
    raise ValueError(f"head must be binary or multiclass, got {head!r}")
  for split in schema.SPLITS:
    if not dataset.splits[split].ids:
      raise ValueError(f"the {split} split is empty")
  names, y, positive_index = _targets(dataset, head, positive_label)
  vectorizer = make_vectorizer()
  x = {"train": vectorizer.fit_transform(dataset.splits["train"].texts)}
  for split in ("validation", "test"):
    x[split] = vectorizer.transform(dataset.splits[split].texts)
  grid, (c, class_weight, model, val_metrics) = _search_grid(
      x, y, head, names, positive_index, cs, class_weights, seed)
  test_scores = _scores(model, x["test"], head, positive_index)
  test_metrics = evaluation.compute_metrics(y["test"], test_scores, head, names)
  return {
      "model": "tfidf_1-2gram+logreg", "head": head, "label_names": names,
      "C": c, "class_weight": class_weight, "vocabulary_size": len(vectorizer.vocabulary_),
      "rows": {s: len(dataset.splits[s].ids) for s in schema.SPLITS},
      "grid": grid, "validation": val_metrics, "test": test_metrics,
      "summary": summarize(val_metrics, test_metrics, head),
      "seconds": round(time.time() - start, 1),
      "test_outputs": (y["test"], test_scores),  # numpy (labels, scores): not written to JSON
  }


def _targets(dataset, head, positive_label):
  """-> (label names, {split: targets}, the positive class or None). binary: 1 for
  `positive_label` (default labels[1]), 0 for the rest (names joined with "|")."""
  labels = list(dataset.labels)
  if head != "binary":
    return labels, {s: dataset.splits[s].label_ids for s in schema.SPLITS}, None
  if len(labels) != 2 and positive_label is None:
    raise ValueError(f"binary needs 2 labels or a positive_label, got {labels}")
  positive_index = labels.index(positive_label) if positive_label else 1
  rest = [n for i, n in enumerate(labels) if i != positive_index]
  names = ["|".join(rest), labels[positive_index]]
  y = {s: (dataset.splits[s].label_ids == positive_index).astype(np.int64) for s in schema.SPLITS}
  return names, y, 1  # the positive class is now 1


def _search_grid(x, y, head, names, positive_index, cs, class_weights, seed):
  """Fits one model per (C, class_weight) on train; -> (the grid's validation scores,
  (C, class_weight, model, validation metrics) of the best by best_f1 / macro_f1)."""
  select = "best_f1" if head == "binary" else "macro_f1"
  fits = []
  for class_weight in class_weights:
    for c in cs:
      model = linear_model.LogisticRegression(C=c, class_weight=class_weight, max_iter=2000,
                                              random_state=seed).fit(x["train"], y["train"])
      fits.append((c, class_weight, model, evaluation.compute_metrics(
          y["validation"], _scores(model, x["validation"], head, positive_index), head, names)))
  grid = [{"C": c, "class_weight": w, f"validation_{select}": m[select]} for c, w, _, m in fits]
  return grid, max(fits, key=lambda fit: fit[3][select])   # max keeps the first of equals


def summarize(val_metrics, test_metrics, head):
  """The headline test figures; binary F1 uses the threshold tuned on validation."""
  if head == "binary":
    threshold = val_metrics["best_threshold"]
    return {"validation_threshold": threshold,
            "test_f1": f1_at(test_metrics, threshold),
            "test_f1_at_0.5": test_metrics["f1"],
            "test_pr_auc": test_metrics["pr_auc"],
            "test_roc_auc": test_metrics["roc_auc"],
            "test_accuracy_at_0.5": test_metrics["accuracy"],
            "test_oracle_best_f1": test_metrics["best_f1"]}
  return {"test_macro_f1": test_metrics["macro_f1"],
          "test_accuracy": test_metrics["accuracy"],
          "test_macro_pr_auc": test_metrics["pr_auc"]}


def run_on_data_dir(preprocess_argv, data_dir, head):
  """run_baseline on the rows of the job's flags, checked to be exactly data_dir's; a mismatch
  or bad input is one `error:` line (SystemExit)."""
  try:
    dataset = load_dataset(preprocess_argv)
    check_against_data_dir(dataset, data_dir)
  except ValueError as e:
    raise SystemExit(f"error: the TF-IDF baseline: {e}") from None
  return run_baseline(dataset, head)


def make_parser():
  """The baseline's own flags; the others are the preprocessing job's."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] + " Other flags are the "
                                   "preprocessing job's (its @recipe, --input, ...).")
  parser.add_argument("--head", default="auto", choices=("auto", "binary", "multiclass"),
                      help="auto: binary for 2 labels, else multiclass")
  parser.add_argument("--positive_label", default=None)
  parser.add_argument("--data_dir", default=None,
                      help="a job output to check the ids/labels of every split against")
  parser.add_argument("--output_json", default=None)
  return parser


def main(argv=None):
  args, job_argv = make_parser().parse_known_args(argv)
  try:
    dataset = load_dataset(job_argv)
    if args.data_dir:
      check_against_data_dir(dataset, args.data_dir)
    head = args.head if args.head != "auto" else (
        "binary" if len(dataset.labels) == 2 else "multiclass")
    result = run_baseline(dataset, head, args.positive_label)
  except ValueError as e:
    sys.exit(f"error: {e}")
  del result["test_outputs"]
  result.update(rows_read=dataset.rows_read, rows_rejected=dataset.rows_rejected)
  if args.output_json:
    with tf.io.gfile.GFile(args.output_json, "w") as f:
      json.dump(result, f, indent=2)
  print(json.dumps({k: result[k] for k in ("model", "head", "label_names", "rows", "C",
                                           "class_weight", "summary", "seconds")}, indent=2))


if __name__ == "__main__":
  main()
