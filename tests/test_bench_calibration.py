"""benchmarks/bench_calibration.py on a made-up finished run: over-confident logits whose fitted
temperature lowers the test ECE, and the confidence floor's share and accuracy by hand."""
import json
import os

import numpy as np
import pytest

from benchmarks import bench_calibration, common
from bertcore import files


def test_the_floor_keeps_the_rows_whose_top_probability_reaches_it():
  labels = np.array([1, 0, 0, 1])
  logits = np.log([9.0, 3.0, 1 / 19, 1 / 19])     # P(1) = 0.9, 0.75, 0.05, 0.05
  figures = bench_calibration.side(labels, logits, labels, logits, "binary", ["a", "b"], 1.0,
                                   0.9)
  # Top probabilities 0.9, 0.75, 0.95, 0.95: rows 1, 3 and 4 reach 0.9; row 4 is wrong.
  assert figures["above_floor_share"] == 0.75
  assert figures["above_floor_accuracy"] == pytest.approx(2 / 3)


def fake_run(model_dir, head="binary"):
  """A finished run of an over-confident model: logits twice the true ones."""
  rng = np.random.RandomState(0)
  final = {"threshold": 0.5}
  for split, n in (("validation", 3000), ("test", 3000)):
    true = rng.normal(0, 2, size=n)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-true))).astype(np.int64)
    os.makedirs(os.path.join(model_dir, "outputs"), exist_ok=True)
    files.write_npz(os.path.join(model_dir, "outputs", f"{split}.npz"),
                    {"labels": labels, "probs": np.zeros(n), "logits": 2 * true[:, None]})
    final[split] = {"label_names": ["rest", "positive"]}
  final["temperature"] = 2.0
  with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
    json.dump({"final": final}, f)
  with open(os.path.join(model_dir, "config.json"), "w") as f:
    json.dump({"model": {"head": head}}, f)


def test_a_record_from_a_finished_run(tmp_path, monkeypatch):
  model_dir = str(tmp_path / "run")
  fake_run(model_dir)
  monkeypatch.setattr(common, "sample", lambda: {"load": 0.0, "busy": 0.0, "cpu_times": None})
  out = str(tmp_path / "calibration.jsonl")
  bench_calibration.main([f"--model_dir={model_dir}", f"--out={out}"])
  [record] = common.read_records(out)
  assert record["temperature"] == 2.0 and record["head"] == "binary"
  before, after = record["before"], record["after"]
  assert after["test"]["ece"] < before["test"]["ece"] / 2
  assert after["test"]["nll"] < before["test"]["nll"]
  # The over-confident side puts more rows above the floor, and is less accurate on them.
  assert before["above_floor_share"] > after["above_floor_share"] > 0
  assert before["above_floor_accuracy"] < after["above_floor_accuracy"]
  assert abs(after["test_f1"] - before["test_f1"]) < 0.02   # same ranking, re-tuned threshold
  assert "commit" in record["provenance"]


def test_bad_input_is_one_error_line(tmp_path):
  with pytest.raises(SystemExit, match="^error: --min_confidence must be in"):
    bench_calibration.main([f"--model_dir={tmp_path}", "--min_confidence=1.5"])
  with pytest.raises(SystemExit, match="^error: .* holds no finished run"):
    bench_calibration.main([f"--model_dir={tmp_path}", f"--out={tmp_path}/x.jsonl"])
