"""bench_quickstart: one record per run from the run's own files (quickstart.sh not run)."""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_quickstart as bq, report  # noqa: E402  pylint: disable=wrong-import-position

OUTPUT = ("==> [09:59:30] 2/5 preprocess\n==> [10:00:00] 3/5 fine-tune\ndata: 29790 train / 3714 validation / 3739 test rows, "
          "labels ['rest', 'positive']; 930 steps per epoch x 1 epochs = 930 steps of 32 examples "
          "(1 replica(s) x 32); precision float32\n==> [10:15:10] 4/5 predictions\n"
          "==> [10:15:20] 5/5 where\n")


def write_results(model_dir):
  os.makedirs(model_dir)
  sweep = {"thresholds": [0.28, 0.29, 0.3], "f1": [0.70, 0.73, 0.71]}
  final = {"threshold": 0.29, "train_examples_per_sec": 34.0, "train_padding_efficiency": 0.87,
           "eval_examples_per_sec": {"validation": 100.0, "test": 100.0},
           "validation": {"num_examples": 10, "pr_auc": 0.82, "best_f1": 0.74},
           "test": {"num_examples": 10, "pr_auc": 0.81, "best_f1": 0.74, "threshold_sweep": sweep}}
  with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
    json.dump({"epochs": [], "final": final}, f)


def test_runs_get_their_own_runs_dir_and_train_flags(tmp_path, monkeypatch):
  calls = []

  def fake_run(command, log_path, env=None, cwd=None):
    calls.append((command, env))
    write_results(os.path.join(env["RUNS"], bq.MODEL_DIR))
    return {"seconds": 1004.0, "returncode": 0, "output": OUTPUT, "log": log_path}

  monkeypatch.setattr(bq.common, "run_logged", fake_run)
  monkeypatch.setattr(bq.common, "sample", lambda: {"load": 0.2, "busy": 0.1,
                                                        "matmul_gflops": 150.0})
  out = tmp_path / "quickstart.jsonl"
  bq.main([f"--work_dir={tmp_path}", f"--out={out}"])
  assert [c for c, _ in calls] == [["bash", "scripts/quickstart.sh"]] * 2
  assert [e["TRAIN_FLAGS"] for _, e in calls] == ["", "--config.precision=float32"]
  assert calls[0][1]["RUNS"] != calls[1][1]["RUNS"]
  records = bq.common.read_records(str(out))
  r = records[1]
  assert (r["variant"], r["precision"], r["wall_seconds"], r["train_eps"]) == (
      "float32", "float32", 1004.0, 34.0)
  assert (r["test_f1_tuned"], r["threshold"], r["test_pr_auc"]) == (0.73, 0.29, 0.81)
  assert r["provenance"]["loaded"] is False
  text = report.render_page(report.QUICKSTART, records)
  assert r["step_seconds"] == {"2": 30, "3": 910, "4": 10}
  # stolen CPU time "-": the fake sample() has no CPU counters
  last = [c.strip() for c in text.splitlines()[-1].strip("|").split("|")]
  assert last[2:] == ["--config.precision=float32", "float32", "16 min 44 s", "15 min 10 s",
                      "34.0", "0.730", "0.29", "0.810", "-", "150", "150", "no"]


def test_step_times_wrap_over_midnight_and_leave_out_the_last_step():
  output = "==> [23:59:50] 1/5 convert\nx\n==> [00:00:20] 2/5 preprocess\n==> [00:00:25] 3/5 t\n"
  assert bq.step_seconds(output) == {"1": 30, "2": 5}
  assert bq.step_seconds("no step lines") == {}
