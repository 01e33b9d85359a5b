"""bench_bucketing: one record per padding mode, from the trainer's results (training faked)."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_bucketing  # noqa: E402  pylint: disable=wrong-import-position


def test_each_padding_mode_writes_a_record_with_its_figures(tmp_path, monkeypatch):
  seen = []

  def fake_train(config, data_dir, model_dir, strategy):
    seen.append((config.train.padding, config.train.steps_per_epoch))
    return {"final": {"train_examples_per_sec": 10.0 if config.train.padding == "bucket" else 2.5,
                      "train_padding_efficiency": 0.7,
                      "validation": {"f1": 0.6, "best_f1": 0.65, "pr_auc": 0.7}}}

  monkeypatch.setattr(bench_bucketing.train, "train_and_evaluate", fake_train)
  monkeypatch.setattr(bench_bucketing.common, "sample", lambda: {"load": 0.0, "busy": 0.0})
  out = tmp_path / "bucketing.jsonl"
  monkeypatch.setattr(sys, "argv", ["bench_bucketing", "--data_dir=/d", "--steps=30",
                                    f"--out={out}"])
  bench_bucketing.main()
  assert seen == [("bucket", 30), ("fixed", 30)]
  records = bench_bucketing.common.read_records(str(out))
  assert [(r["padding"], r["train_eps"], r["validation_pr_auc"]) for r in records] == [
      ("bucket", 10.0, 0.7), ("fixed", 2.5, 0.7)]
  assert records[0]["encoder"] == "random (MiniLM sizes)" and records[0]["precision"]
  assert records[0]["command"][:3] == ["python", "-m", "benchmarks.bench_bucketing"]
