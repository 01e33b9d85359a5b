"""bench_startup: current and baseline runs interleaved, each from its own checkout (trainer not run)."""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_startup as bs, report  # noqa: E402  pylint: disable=wrong-import-position

BASELINE = "fedcba9876543210" * 2 + "01234567"


def write_results(model_dir, validation_eps, test_eps):
  os.makedirs(model_dir)
  final = {"eval_examples_per_sec": {"validation": validation_eps, "test": test_eps},
           "validation": {"num_examples": 300}, "test": {"num_examples": 200}}
  with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
    json.dump({"epochs": [], "final": final}, f)


def test_runs_alternate_between_checkouts_and_report_ratios(tmp_path, monkeypatch):
  calls = []
  walls = iter([50.0, 100.0, 60.0, 80.0])   # current, baseline, current, baseline

  def fake_run(command, log_path, env=None, cwd=None):
    calls.append((cwd, command))
    model_dir = command[command.index("--strategy=one_device") - 1].split("=", 1)[1]
    write_results(model_dir, 100.0, 50.0)
    return {"seconds": next(walls), "returncode": 0, "output": "data: 9 train rows; precision float32\n",
            "log": log_path}

  checkout = str(tmp_path / "baseline-fedcba987654")
  monkeypatch.setattr(bs.common, "baseline_checkout", lambda rev, work_dir: (checkout, BASELINE))
  monkeypatch.setattr(bs.common, "run_logged", fake_run)
  monkeypatch.setattr(bs.common, "sample", lambda: {"load": 0.2, "busy": 0.1})
  out = tmp_path / "startup.jsonl"
  bs.main(["--data_dir=d", "--encoder_dir=e", "--baseline=HEAD~3", "--rounds=2", "--steps=5",
           f"--work_dir={tmp_path}", f"--out={out}"])
  assert [cwd for cwd, _ in calls] == [bs.common.REPO, checkout] * 2
  assert all("--config.train.steps_per_epoch=5" in c and "--config.train.epochs=1" in c
             for _, c in calls)
  records = bs.common.read_records(str(out))
  assert [r["variant"] for r in records] == ["current", "baseline"] * 2
  assert [r["code_commit"] for r in records][1::2] == [BASELINE] * 2
  assert records[0]["eval_seconds"] == {"validation": 3.0, "test": 4.0}
  lines = report.render_startup(records)
  rows = [line for line in lines if line.startswith("| 1 ") or line.startswith("| 2 ")]
  assert rows[0].split(" | ")[1:] == ["current", records[0]["code_commit"][:12], "float32",
                                      "50.0", "3.0", "4.0", "0.50", "no |"]
  assert rows[3].split(" | ")[2] == BASELINE[:12]
  summary = lines[lines.index("Per variant over rounds:") + 4:]
  # current: ratios 0.50 and 0.75 -> median 0.62 (0.625 rounds to even); baseline 1.00
  assert summary[0] == "| current | 2 | 55.0 | 0.62 |"
  assert summary[1] == "| baseline | 2 | 90.0 | 1.00 |"


def test_steps_must_be_positive(capsys):
  try:
    bs.parse_args(["--data_dir=d", "--encoder_dir=e", "--baseline=HEAD", "--steps=0"])
  except SystemExit as e:
    assert e.code == 2
  assert "--steps must be at least 1" in capsys.readouterr().err
