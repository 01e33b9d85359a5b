"""The learning-curve benchmark's pure helpers: variant parsing and reading a run's results."""
import argparse
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_learning_curve as blc, common  # noqa: E402  pylint: disable=wrong-import-position


def test_parse_variant_turns_overrides_into_config_flags():
  assert blc.parse_variant("bf16:precision=mixed_bfloat16,train.seed=3") == (
      "bf16", ["--config.precision=mixed_bfloat16", "--config.train.seed=3"])
  assert blc.parse_variant("today:") == ("today", [])
  with pytest.raises(ValueError, match="needs field=value"):
    blc.parse_variant("x:train.epochs")


def _sweep(f1):
  thresholds = [round(i / 100, 2) for i in range(1, 100)]
  return {"thresholds": thresholds, "f1": [f1(t) for t in thresholds]}


def test_f1_at_reads_the_sweep_at_the_nearest_threshold():
  metrics = {"threshold_sweep": _sweep(lambda t: t)}
  assert common.f1_at(metrics, 0.34) == 0.34
  assert common.f1_at(metrics, 0.341) == 0.34   # a float32 round trip of 0.34
  assert common.f1_at({}, 0.34) is None


def test_read_final_gives_test_f1_at_the_validation_threshold(tmp_path):
  # Test F1 is 0.9 at the validation's threshold (0.3), 0.5 elsewhere; "f1" is at 0.5.
  test = {"pr_auc": 0.8, "best_f1": 0.9, "f1": 0.6,
          "threshold_sweep": _sweep(lambda t: 0.9 if t == 0.3 else 0.5)}
  validation = {"pr_auc": 0.7, "best_f1": 0.75}
  results = {"epochs": [], "final": {"validation": validation, "test": test, "threshold": 0.3}}
  (tmp_path / "eval_results.json").write_text(json.dumps(results))
  record = blc.read_final(str(tmp_path))
  assert record["test/f1_tuned"] == 0.9
  assert record["test/f1"] == 0.6
  assert record["validation/pr_auc"] == 0.7
  assert record["threshold"] == 0.3


def test_read_final_of_an_unfinished_run_is_none(tmp_path):
  assert blc.read_final(str(tmp_path)) is None
  (tmp_path / "eval_results.json").write_text(json.dumps({"epochs": [], "final": None}))
  assert blc.read_final(str(tmp_path)) is None


def test_run_command_sets_the_schedule_to_the_examples():
  args = argparse.Namespace(batch_size=32, data_dir="/d", encoder_dir="/e",
                            config="configs/tweets_minilm.py")
  cmd = blc.run_command(args, ["--config.precision=float32"], 3, 6400, "/m")
  assert cmd[1:3] == ["-m", "trainer.task"] and cmd[-1] == "--config.precision=float32"
  for flag in ("--config.train.steps_per_epoch=200", "--config.train.seed=3",
               "--config.train.checkpoint_every_steps=200", "--model_dir=/m"):
    assert flag in cmd


def test_a_finished_run_is_read_back_not_rerun(tmp_path, monkeypatch):
  args = argparse.Namespace(batch_size=32, data_dir="/d", encoder_dir="/e", work_dir=str(tmp_path),
                            config="configs/tweets_minilm.py")
  model_dir = tmp_path / "a-seed1-n6400"
  model_dir.mkdir()
  (model_dir / "eval_results.json").write_text(json.dumps({"epochs": [], "final": {
      "threshold": 0.3, "validation": {"pr_auc": 0.7}, "test": {"pr_auc": 0.8}}}))
  monkeypatch.setattr(blc.common, "run_logged", lambda *a, **k: pytest.fail("rerun"))
  monkeypatch.setattr(blc.common, "sample", lambda: {"load": 0.0, "busy": 0.0})
  record = blc.run_one(args, "a", [], 1, 6400, {"cores": 2, "commit": "x"})
  assert record["wall_seconds"] is None and record["test/pr_auc"] == 0.8
  assert record["provenance"]["commit"] == "x"
