"""Evaluation during and after training: epoch-end validation, the final evaluation, results.

  <model_dir>/eval_results.json  {"epochs": [{epoch, step, validation, best}],
                                  "final": {step, source, validation, test, threshold,
                                            eval_examples_per_sec: {split: wall examples/s
                                            of its pass}, ...}}
  <model_dir>/outputs/<split>.npz the final evaluation's labels, probabilities and logits (numpy
                                  arrays `labels`, `probs`, `logits`), for error analysis and
                                  bootstrap intervals

Calibration (config.eval.calibration, trainer/calibration.py): with "temperature", every
validation pass fits one temperature T on its own logits, and the test split of the final
evaluation uses the validation's T. A split's metrics are then those of the calibrated
probabilities (softmax / sigmoid of logits / T, what the export serves), so the threshold sweep
runs on them too, and they carry
  temperature, calibration            T, and "temperature" | "none" | "not fitted: <why>"
  ece, brier, nll                     of the calibrated probabilities (lower is better)
  ece_uncalibrated, brier_uncalibrated, nll_uncalibrated    of the raw ones (T = 1)
"""
import dataclasses
import math
import posixpath
import time

import numpy as np
import tensorflow as tf
from absl import logging

from bertcore import files, names
from trainer import calibration, evaluation, input_pipeline, plan as plan_lib
from trainer import model as model_lib
from trainer.progress import say

RESULTS_FILE = names.RESULTS_FILE
PLOTS_DIR = "plots"
OUTPUTS_DIR = "outputs"
# Evaluation batches per compiled call: the host works once per call, and a preemption
# notice waits at most one call (16 batches of 128 MiniLM rows: a few seconds on 2 cores).
STEPS_PER_CALL = 16
SUMMARY_KEYS = ("loss", "accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc",
                "best_threshold", "best_f1", "temperature", "ece", "brier", "nll",
                "ece_uncalibrated", "brier_uncalibrated", "nll_uncalibrated")
UNCALIBRATED = "_uncalibrated"
RELIABILITY_PNG = "reliability.png"


@dataclasses.dataclass(frozen=True)
class Evaluated:
  """One pass over a split: JSON-able metrics, labels, probabilities (calibrated: of logits / T)
  and logits (numpy), and the pass's wall seconds (input pipeline, tracing of new shapes and
  metrics included). unfit: why no temperature could be fitted on this split, or None."""
  metrics: dict
  labels: np.ndarray
  probs: np.ndarray
  seconds: float = 0.0
  logits: np.ndarray = None
  temperature: float = 1.0
  unfit: str = None


def evaluate_split(split, *, config, plan, strategy, eval_step, between_calls=None,
                   steps_per_call=STEPS_PER_CALL, pool_batches=input_pipeline.POOL_BATCHES,
                   temperature=None):
  """Runs eval_step over a split; returns an Evaluated, or None if the split is empty.

  Args:
    eval_step: steps.make_eval_step's eval_fn(iterator, num_steps).
    temperature: the T to divide the logits by; None: fitted on this split when
      config.eval.calibration is "temperature", else 1.
    between_calls: called before each eval_step call and after the last (the preemption
      check, agreed across workers: a stop during evaluation leaves its results unrecorded).
    steps_per_call: batches per eval_step call.
    pool_batches: batches sorted together by length (input_pipeline.eval_batches).
  """
  if plan.rows[split] == 0:
    return None
  start = time.perf_counter()
  src = plan.source(split, config.model)
  pipelines = []

  def dataset_fn(ctx):
    pipelines.append(ctx.num_input_pipelines)
    return input_pipeline.eval_batches(src, config.eval.global_batch_size, config.train,
                                       config.data, input_context=ctx,
                                       pool_batches=pool_batches)
  iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
  steps = input_pipeline.eval_steps(src.shards, pipelines[0], config.eval.global_batch_size,
                                    strategy.num_replicas_in_sync)
  parts = []
  for done in range(0, steps, steps_per_call):
    if between_calls:
      between_calls()
    n = tf.constant(min(steps_per_call, steps - done), tf.int32)
    try:
      parts.append({k: v.numpy() for k, v in eval_step(iterator, n).items()})
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      raise plan_lib.data_error(plan, split, e) from None
  if between_calls:
    between_calls()
  out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  if temperature is None:
    temperature = FIT if config.eval.calibration == "temperature" else 1.0
  evaluated = _metrics(out, split, config.model.head, plan, temperature)
  return dataclasses.replace(evaluated, seconds=time.perf_counter() - start)


def examples_per_sec(evaluated):
  """A pass's evaluation speed (examples/s of wall time), or None if it was not timed."""
  if not evaluated.seconds:
    return None
  return evaluated.metrics["num_examples"] / evaluated.seconds


FIT = "fit"  # _metrics' temperature: fit one on this split's logits


def _metrics(out, split, head, plan, temperature):
  keep = out["weights"] > 0                       # filler rows have weight 0
  labels, probs, logits = out["labels"][keep], out["probs"][keep], out["logits"][keep]
  if keep.sum() != plan.rows[split]:
    logging.warning("%s: evaluated %d rows, the manifest says %d", split, keep.sum(),
                    plan.rows[split])
  loss = float(np.mean(out["loss"][keep]))
  if head == "binary":
    labels = labels[:, 0]
  labels = labels.astype(np.int64)
  if not np.isfinite(logits).all() or not math.isfinite(loss):
    return Evaluated({"loss": None, "num_examples": int(keep.sum()),
                      "error": "the model produced non-finite outputs"}, labels, probs,
                     logits=logits)
  return calibrated(labels, logits, probs, head, list(plan.label_names), loss, temperature)


def calibrated(labels, logits, probs, head, label_names, loss, temperature):
  """An Evaluated whose metrics are those of logits / T (T fitted here when temperature is FIT).

  probs: the raw probabilities (of T = 1), used as they are when T is 1.
  """
  method, unfit = "none", None
  if temperature == FIT:
    temperature, unfit = calibration.fit_temperature(labels, logits, head)
    method = "temperature" if unfit is None else f"not fitted: {unfit}"
  elif temperature != 1.0:
    method = "temperature"
  if temperature != 1.0:
    # In float32 with TensorFlow's ops, as the export computes them, so that a tuned threshold
    # decides the same rows here and in serving.
    probs = model_lib.probabilities(
        tf.constant(logits, tf.float32) / tf.constant(temperature, tf.float32), head).numpy()
  metrics = evaluation.compute_metrics(labels, probs, head, label_names, loss=loss)
  metrics.update(calibration_metrics(labels, logits, head, temperature))
  metrics["calibration"] = method
  return Evaluated(metrics, labels, probs, logits=logits, temperature=temperature, unfit=unfit)


def calibration_metrics(labels, logits, head, temperature):
  """The flat calibration keys of a split's metrics (module docstring)."""
  after = calibration.scores(labels, logits, head, temperature)
  before = after if temperature == 1.0 else calibration.scores(labels, logits, head)
  return {"temperature": float(temperature), **after,
          **{k + UNCALIBRATED: v for k, v in before.items()}}


def best_key(config):
  key = config.eval.best_metric
  return "best_f1" if key == "auto" else key


def record_epoch(results, epoch, step, evaluated, best, config):
  """Updates the best weights and results["epochs"]; returns whether this epoch is best."""
  key = best_key(config)
  improved = best.update(evaluated.metrics.get(key), step)
  results["epochs"] = [e for e in results["epochs"] if e["epoch"] != epoch] + [
      {"epoch": epoch, "step": step, "validation": evaluated.metrics, "best": improved}]
  return improved


def summary(metrics):
  """The scalar metrics shown in progress lines, TensorBoard and W&B."""
  return {k: metrics.get(k) for k in SUMMARY_KEYS if isinstance(metrics.get(k), float)}


def final_splits(config, plan):
  """The splits of the final evaluation: validation, and the test split if labelled."""
  return ["validation"] + (["test"] if config.eval.test_split and plan.labelled["test"] else [])


def save_plots(split, evaluated, config, plan):
  """Writes a split's plots under model_dir/plots/<split>; returns {name: path}."""
  out_dir = posixpath.join(plan.model_dir, PLOTS_DIR, split)
  paths = evaluation.save_plots(evaluated.labels, evaluated.probs, config.model.head,
                                list(plan.label_names), out_dir)
  return {f"{split}/{posixpath.splitext(posixpath.basename(p))[0]}": p for p in paths}


def save_reliability_plot(evaluated_by_split, config, plan):
  """Writes model_dir/plots/reliability.png (each split before and after calibration);
  returns {name: path}."""
  head = config.model.head
  curves = {split: {"uncalibrated": calibration.reliability_bins(
                        e.labels, calibration.probabilities(e.logits, head), head),
                    f"T = {e.temperature:.3g}": calibration.reliability_bins(
                        e.labels, e.probs, head)}
            for split, e in evaluated_by_split.items()}
  path = evaluation.save_reliability_plot(
      curves, head, posixpath.join(plan.model_dir, PLOTS_DIR, RELIABILITY_PNG))
  return {"reliability": path}


def save_outputs(split, evaluated, plan):
  """Writes a split's labels, probabilities and logits to model_dir/outputs/<split>.npz;
  returns the path."""
  tf.io.gfile.makedirs(posixpath.join(plan.model_dir, OUTPUTS_DIR))
  return files.write_npz(posixpath.join(plan.model_dir, OUTPUTS_DIR, f"{split}.npz"),
                         {"labels": evaluated.labels, "probs": evaluated.probs,
                          "logits": evaluated.logits})


def read_outputs(model_dir, split):
  """(labels, probs) that save_outputs wrote for a split (probs: calibrated, as exported)."""
  data = files.read_npz(posixpath.join(model_dir, OUTPUTS_DIR, f"{split}.npz"))
  return data["labels"], data["probs"]


def read_logits(model_dir, split):
  """The raw logits that save_outputs wrote for a split; None for runs made before they were."""
  data = files.read_npz(posixpath.join(model_dir, OUTPUTS_DIR, f"{split}.npz"))
  return data["logits"] if "logits" in data else None


def decision_threshold(validation, head):
  """The validation's F1-best threshold (binary / multilabel), else the default."""
  threshold = (validation or {}).get("best_threshold")
  if threshold is None and head != "multiclass":
    threshold = evaluation.DEFAULT_THRESHOLD
  return threshold


def read_results(model_dir):
  path = posixpath.join(model_dir, RESULTS_FILE)
  return files.read_json(path) if tf.io.gfile.exists(path) else {}


def write_results(model_dir, results):
  files.write_json(posixpath.join(model_dir, RESULTS_FILE), results)
