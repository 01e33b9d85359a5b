"""trainer.calibration (temperature scaling, ECE / Brier / NLL) and its place in training and export.

The pure functions are checked on made-up logits with a known temperature and on a hand-worked
example; one tiny training checks the results, plot and export end to end, and one with a
too-small validation split checks the warning.
"""
import json
import os

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from serving import export_info
from serving import inference
from trainer import calibration
from trainer import eval_loop
from trainer import objective
from trainer import strategy as strategy_lib
from trainer import train


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _softmax(x):
  e = np.exp(x - x.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


# ---- fitting ----------------------------------------------------------------------------------

def test_a_fitted_temperature_recovers_the_one_the_binary_logits_were_made_with():
  rng = np.random.RandomState(0)
  true_logits = rng.normal(0.0, 2.0, size=20000)
  labels = (rng.uniform(size=true_logits.size) < _sigmoid(true_logits)).astype(np.int64)
  # An over-confident model: its logits are the true ones times 2.5.
  temperature, unfit = calibration.fit_temperature(labels, 2.5 * true_logits[:, None], "binary")
  assert unfit is None
  assert temperature == pytest.approx(2.5, rel=0.05)
  # Dividing by the fitted T lowers the NLL and the ECE.
  before = calibration.scores(labels, 2.5 * true_logits, "binary")
  after = calibration.scores(labels, 2.5 * true_logits, "binary", temperature)
  assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 2


def test_a_fitted_temperature_recovers_the_one_the_multiclass_logits_were_made_with():
  rng = np.random.RandomState(1)
  true_logits = rng.normal(0.0, 1.5, size=(20000, 4))
  probs = _softmax(true_logits)
  labels = np.array([rng.choice(4, p=p) for p in probs])
  # An under-confident model: its logits are the true ones times 0.6.
  temperature, unfit = calibration.fit_temperature(labels, 0.6 * true_logits, "multiclass")
  assert unfit is None
  assert temperature == pytest.approx(0.6, rel=0.05)


def test_calibrated_logits_keep_a_temperature_near_one():
  rng = np.random.RandomState(2)
  logits = rng.normal(0.0, 2.0, size=(5000, 3))
  labels = (rng.uniform(size=logits.shape) < _sigmoid(logits)).astype(np.int64)
  temperature, _ = calibration.fit_temperature(labels, logits, "multilabel")
  assert temperature == pytest.approx(1.0, rel=0.08)


def test_too_small_or_single_class_validation_keeps_temperature_one():
  logits = np.linspace(-3, 3, 19)
  labels = (logits > 0).astype(np.int64)
  assert calibration.fit_temperature(labels, logits, "binary") == (
      1.0, "19 validation rows (fewer than 20)")
  assert calibration.fit_temperature(np.ones(40, np.int64), np.linspace(-3, 3, 40), "binary") == (
      1.0, "a single class in the validation labels")
  assert calibration.fit_temperature(np.full(40, 2), np.zeros((40, 3)), "multiclass")[0] == 1.0


# ---- scores on a hand-worked example ----------------------------------------------------------

def test_binary_scores_by_hand():
  # P(label 1) = 0.75, 0.75, 0.25, 0.5.
  logits = np.log([3.0, 3.0, 1 / 3, 1.0])
  labels = np.array([1, 0, 0, 1])
  probs = calibration.probabilities(logits, "binary")
  np.testing.assert_allclose(probs, [0.75, 0.75, 0.25, 0.5])
  assert calibration.nll(labels, logits, "binary") == pytest.approx(
      (2 * np.log(4 / 3) + np.log(4) + np.log(2)) / 4, rel=1e-12)
  assert calibration.brier(labels, probs, "binary") == pytest.approx(0.9375 / 4, rel=1e-12)
  # Bins of width 1/15: {0.75, 0.75} accuracy 1/2 (gap 0.25), {0.25} 0 (gap 0.25),
  # {0.5} 1 (gap 0.5): 2/4 * 0.25 + 1/4 * 0.25 + 1/4 * 0.5.
  assert calibration.ece(labels, probs, "binary") == pytest.approx(0.3125, rel=1e-12)


def test_multiclass_scores_by_hand():
  logits = np.log([[6.0, 3.0, 1.0], [1.0, 1.0, 2.0]])   # softmax [.6 .3 .1], [.25 .25 .5]
  labels = np.array([0, 1])
  probs = calibration.probabilities(logits, "multiclass")
  np.testing.assert_allclose(probs, [[0.6, 0.3, 0.1], [0.25, 0.25, 0.5]])
  assert calibration.nll(labels, logits, "multiclass") == pytest.approx(
      (-np.log(0.6) - np.log(0.25)) / 2, rel=1e-12)
  # (0.4^2 + 0.3^2 + 0.1^2 + 0.25^2 + 0.75^2 + 0.5^2) / 2
  assert calibration.brier(labels, probs, "multiclass") == pytest.approx(0.5675, rel=1e-12)
  # Top label: 0.6 right (gap 0.4), 0.5 wrong (gap 0.5).
  assert calibration.ece(labels, probs, "multiclass") == pytest.approx(0.45, rel=1e-12)


def test_nll_stays_finite_for_saturated_logits():
  assert calibration.nll(np.array([0, 1]), np.array([800.0, -800.0]), "binary") == pytest.approx(800)
  assert calibration.nll(np.array([1]), np.array([[900.0, 0.0]]), "multiclass") == pytest.approx(900)


def test_the_objective_can_name_the_calibration_scores():
  for head in ("binary", "multiclass", "multilabel"):
    produced = objective.produced_metrics(head)
    assert {"ece", "nll", "brier", "nll_uncalibrated"} <= set(produced)
    assert "temperature" not in produced
  assert objective.goal("nll") == objective.goal("ece") == "minimize"


# ---- training and export ----------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("float32_policy")   # conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(data_dir, n_train=256, n_val=96, n_test=48)
  fx.write_vocab(data_dir)
  model_dir = str(tmp_path_factory.mktemp("run"))
  # A high learning rate for one epoch: a confident model, so that T moves away from 1.
  config = fx.tiny_config(data_dir, **{"train.epochs": 1, "train.learning_rate": 2e-2})
  results = train.train_and_evaluate(config, data_dir, model_dir,
                                     strategy_lib.build_strategy("one_device"))
  return {"data_dir": data_dir, "model_dir": model_dir, "results": results}


def test_training_reports_calibration_before_and_after(trained, capsys):
  final = trained["results"]["final"]
  temperature = final["temperature"]
  assert temperature > 0 and temperature != 1.0
  for split in ("validation", "test"):
    metrics = final[split]
    assert metrics["temperature"] == temperature and metrics["calibration"] == "temperature"
    for score in calibration.SCORES:
      assert np.isfinite(metrics[score]) and np.isfinite(metrics[score + "_uncalibrated"])
  # Fitted on validation by minimum NLL: the validation NLL cannot get worse.
  assert final["validation"]["nll"] <= final["validation"]["nll_uncalibrated"]
  # The saved outputs hold the raw logits and the calibrated probabilities of logits / T.
  labels, probs = eval_loop.read_outputs(trained["model_dir"], "test")
  logits = eval_loop.read_logits(trained["model_dir"], "test")
  np.testing.assert_allclose(probs, _sigmoid(logits[:, 0] / temperature), atol=1e-6)
  assert calibration.ece(labels, probs, "binary") == pytest.approx(final["test"]["ece"], abs=1e-6)
  written = json.load(open(os.path.join(trained["model_dir"], "eval_results.json")))
  assert written["final"]["test"]["ece_uncalibrated"] == final["test"]["ece_uncalibrated"]
  assert os.path.getsize(os.path.join(trained["model_dir"], "plots", "reliability.png")) > 1000
  assert train.calibration_line(final) == (
      f"calibration: T={temperature:.3g}, validation ECE "
      f"{final['validation']['ece_uncalibrated']:.3f} -> {final['validation']['ece']:.3f}, "
      f"test ECE {final['test']['ece_uncalibrated']:.3f} -> {final['test']['ece']:.3f}")
  # The epoch-end validation fitted the same T on the same (best) weights.
  assert trained["results"]["epochs"][-1]["validation"]["temperature"] == temperature


def test_the_export_serves_probabilities_of_logits_over_temperature(trained):
  export_dir = os.path.join(trained["model_dir"], "export")
  final = trained["results"]["final"]
  metadata = export_info.read_metadata(export_dir)
  assert metadata["temperature"] == final["temperature"]
  assert export_info.temperature(metadata) == final["temperature"]
  loaded = inference.load(export_dir)
  assert loaded.temperature.numpy() == np.float32(final["temperature"])
  # The records of the test split: their served probabilities are sigmoid(logits / T) of the
  # final evaluation's logits (the same rows, matched by example id through the records).
  records = [r.numpy() for r in tf.data.TFRecordDataset(
      tf.io.gfile.glob(os.path.join(trained["data_dir"], "test", "*")))]
  out = loaded.signatures["serve_examples"](examples=tf.constant(records))
  served = dict(zip(out["example_id"].numpy(), out["probabilities"].numpy()))
  logits = eval_loop.read_logits(trained["model_dir"], "test")[:, 0]
  _, probs = eval_loop.read_outputs(trained["model_dir"], "test")
  assert len(served) == len(logits) == 48
  # The outputs are in evaluation order, not file order: compare the sorted values.
  np.testing.assert_allclose(np.sort(list(served.values())),
                             np.sort(_sigmoid(logits / final["temperature"])), atol=1e-5)
  np.testing.assert_allclose(np.sort(list(served.values())), np.sort(probs), atol=1e-5)
  # The label follows the threshold swept on the calibrated probabilities.
  threshold = final["threshold"]
  labels = out["label_id"].numpy()
  np.testing.assert_array_equal(labels, (out["probabilities"].numpy() >= threshold).astype(int))


def test_a_too_small_validation_split_keeps_temperature_one_with_a_warning(tmp_path, capsys):
  data_dir = str(tmp_path / "data")
  fx.tiny_data_dir(data_dir, n_train=64, n_val=12, n_test=8)
  fx.write_vocab(data_dir)
  config = fx.tiny_config(data_dir, **{"train.epochs": 1, "export": False})
  results = train.train_and_evaluate(config, data_dir, str(tmp_path / "run"),
                                     strategy_lib.build_strategy("one_device"))
  out = capsys.readouterr().out
  warnings = [line for line in out.splitlines() if line.startswith("warning:")]
  assert warnings == ["warning: calibration: temperature kept at 1 (12 validation rows (fewer "
                      "than 20)); the exported probabilities are uncalibrated"]
  final = results["final"]
  assert final["temperature"] == 1.0 == final["test"]["temperature"]
  assert final["validation"]["calibration"] == "not fitted: 12 validation rows (fewer than 20)"
  assert final["validation"]["ece"] == final["validation"]["ece_uncalibrated"]


def test_a_lower_is_better_best_metric_is_refused():
  from trainer import config as config_lib
  config = config_lib.default_config()
  config.eval.best_metric = "nll"
  with pytest.raises(ValueError, match="best_metric='nll' is lower-is-better"):
    config_lib.validate(config)
  config.eval.best_metric = "auto"
  config.eval.calibration = "platt"
  with pytest.raises(ValueError, match="eval.calibration='platt' is not one of temperature, none"):
    config_lib.validate(config)
