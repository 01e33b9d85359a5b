"""The trial contract: one named objective out of a run, for hyper-parameter search engines.

A search engine runs `python -m trainer.task ... --objective=<metric>` as one trial. The chief
reports the validation value of <metric> (default: config.eval.best_metric, the metric the
run picks its best checkpoint by), once per evaluation (intermediate, for early stopping) and
once at the end (the value at the best checkpoint, the trial's result), to:

  stdout    per evaluation `objective: step=<step> <metric>=<value>`, at the end one line
            `<metric>=<value>` (Katib's stdout collector reads both; launch.optuna_search too)
  Vertex    cloudml-hypertune's report_hyperparameter_tuning_metric(<metric>, value, step):
            JSON lines in $CLOUD_ML_HP_METRIC_FILE (default /tmp/hypertune/output.metrics),
            only in a tuning trial (HYPERTUNE_VARIABLES set), so other runs leave no file
  W&B       `objective/<metric>` in the train run's history per evaluation and in its summary
            (the value at the best checkpoint so far): a sweep's `metric.name`
TensorFlow-free at import (the launchers read default_name and goal); produced_metrics loads
trainer.evaluation.
"""
import os
import posixpath

import numpy as np

INTERMEDIATE_PREFIX = "objective:"
WANDB_PREFIX = "objective/"
# Lower is better: the loss and the calibration scores (trainer/calibration.py; `nll` and `ece`
# are of the calibrated probabilities when config.eval.calibration is "temperature").
MINIMIZED = ("loss", "ece", "brier", "nll", "ece_uncalibrated", "brier_uncalibrated",
             "nll_uncalibrated")
# Environment variables naming the trial a tuning service runs (--model_dir_per_trial):
# Vertex AI's hyper-parameter tuning, then a W&B sweep agent's run id.
TRIAL_ID_VARIABLES = ("CLOUD_ML_TRIAL_ID", "WANDB_RUN_ID")
# Set by Vertex AI in a hyper-parameter tuning trial (or by a user naming the metrics file).
HYPERTUNE_VARIABLES = ("CLOUD_ML_TRIAL_ID", "CLOUD_ML_HP_METRIC_FILE")


def produced_metrics(head):
  """The scalar validation metrics a run with this head produces (sorted names).

  Read from trainer.evaluation itself, on a small made-up pass, so the list cannot drift.
  """
  from trainer import eval_loop  # pylint: disable=g-import-not-at-top  (TensorFlow)
  labels = np.array([0, 1, 0, 1])
  probs = np.array([0.2, 0.7, 0.6, 0.9])
  names = ["a", "b"]
  if head == "multiclass":
    probs = np.stack([1 - probs, probs], axis=1)
  elif head == "multilabel":
    labels, probs = np.stack([labels, 1 - labels], 1), np.stack([probs, 1 - probs], 1)
  logits = np.log(probs) if head == "multiclass" else np.log(probs / (1 - probs))
  metrics = eval_loop.calibrated(labels, logits, probs, head, names, 0.5, 1.0).metrics
  return sorted(k for k, v in metrics.items()
                if isinstance(v, float) and k not in ("best_threshold", "temperature"))


def default_name(config):
  """The metric the run picks its best checkpoint by (trainer.eval_loop.best_key's rule)."""
  key = config.eval.best_metric
  return "best_f1" if key == "auto" else key


def resolve_name(name, config):
  """The objective's metric name: `name`, or default_name(config) if empty.

  Raises ValueError (one line) if a run with this config does not produce that metric.
  """
  name = name or default_name(config)
  produced = produced_metrics(config.model.head)
  if name not in produced:
    raise ValueError(f"objective {name!r} is not a validation metric of a {config.model.head} "
                     f"run; choose one of {', '.join(produced)}")
  return name


def goal(name):
  """"minimize" for a loss, else "maximize"."""
  return "minimize" if name in MINIMIZED else "maximize"


def trial_model_dir(model_dir, environ=None):
  """model_dir/<trial id> when a tuning service set one (TRIAL_ID_VARIABLES), else model_dir."""
  environ = os.environ if environ is None else environ
  for variable in TRIAL_ID_VARIABLES:
    if environ.get(variable):
      return posixpath.join(model_dir, f"trial-{environ[variable]}")
  return model_dir


def final_value(results, name):
  """The objective of a finished run's results: its final validation value, or None."""
  value = ((results.get("final") or {}).get("validation") or {}).get(name)
  return value if isinstance(value, (int, float)) else None


class Reporter:
  """Reports one objective to stdout, Vertex's hypertune file and W&B; a no-op off the chief."""

  def __init__(self, name, chief=True):
    self.name = name
    self.chief = chief
    self._hypertune = None
    self._at_best = None

  def _report_hypertune(self, value, step):
    if self._hypertune is False or not any(os.environ.get(v) for v in HYPERTUNE_VARIABLES):
      return
    try:
      if self._hypertune is None:
        import hypertune  # cloudml-hypertune: writes a local JSON-lines file, nothing else
        self._hypertune = hypertune.HyperTune()
      self._hypertune.report_hyperparameter_tuning_metric(
          hyperparameter_metric_tag=self.name, metric_value=value, global_step=step)
    except OSError as e:  # e.g. another user's /tmp/hypertune: the run itself goes on
      print(f"warning: cannot write the hypertune metrics file: {e}", flush=True)
      self._hypertune = False

  def on_validation(self, step, metrics, improved, tracker):
    """One epoch-end evaluation (train.train_and_evaluate's on_validation hook)."""
    value = metrics.get(self.name)
    if not self.chief or not isinstance(value, (int, float)):
      return
    print(f"{INTERMEDIATE_PREFIX} step={step} {self.name}={value:.6g}", flush=True)
    self._report_hypertune(value, step)
    if improved or self._at_best is None:
      self._at_best = value
    tracker.log({WANDB_PREFIX + self.name: value}, step=step)
    tracker.summary({WANDB_PREFIX + self.name: self._at_best})

  def on_final(self, results):
    """The end of a run: the one `<name>=<value>` line; returns the value (None if absent)."""
    value = final_value(results, self.name)
    if not self.chief or value is None:
      return value
    self._report_hypertune(value, results["final"]["step"])
    print(f"{self.name}={value:.6g}", flush=True)
    return value
