"""bench_train_speed: commands per variant and the steady-state rate of progress lines."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_train_speed as bts  # noqa: E402  pylint: disable=wrong-import-position

OUTPUT = """\
data: ...; precision float32
step 20/121 epoch 1/1 loss 0.6900 examples/s 5.0 padding efficiency 0.800 lr 5e-05 eta 0:01:00
step 40/121 epoch 1/1 loss 0.6000 examples/s 40.0 padding efficiency 0.900 lr 4e-05 eta 0:00:10
step 60/121 epoch 1/1 loss 0.5000 examples/s 50.0 padding efficiency 0.950 lr 3e-05 eta 0:00:05
"""


def test_steady_state_leaves_out_the_first_window():
  assert bts.steady_state(OUTPUT) == pytest.approx((45.0, 0.925))
  assert bts.steady_state(OUTPUT.splitlines()[1]) is None


def test_commands_stop_at_steps_and_carry_the_variant():
  args = bts.parse_args(["--data_dir=d", "--encoder_dir=e", "--steps=60"])
  before = bts.command("before", args, "/m")
  assert "--config.train.stop_at_step=60" in before and "--config.precision=float32" in before
  assert "--config.train.bucket_boundaries=16,32,64,128" in before
  assert not any("precision" in a for a in bts.command("after", args, "/m"))


def test_parse_args_rejects_unknown_variants_and_too_few_steps(capsys):
  with pytest.raises(SystemExit):
    bts.parse_args(["--data_dir=d", "--encoder_dir=e", "--variants=eight"])
  assert "unknown variants ['eight']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    bts.parse_args(["--data_dir=d", "--encoder_dir=e", "--steps=40"])


def test_baseline_runs_after_f32_from_its_own_checkout(tmp_path, monkeypatch):
  from benchmarks import report
  calls = []

  def fake_run(command, log_path, env=None, cwd=None):
    calls.append((cwd, command))
    return {"seconds": 60.0, "returncode": 0, "output": OUTPUT, "log": log_path}

  checkout = str(tmp_path / "baseline-fedcba987654")
  monkeypatch.setattr(bts.common, "baseline_checkout", lambda rev, work_dir: (checkout, "fe" * 20))
  monkeypatch.setattr(bts.common, "run_logged", fake_run)
  monkeypatch.setattr(bts.common, "sample", lambda: {"load": 0.2, "busy": 0.1})
  out = tmp_path / "train_speed.jsonl"
  bts.main(["--data_dir=d", "--encoder_dir=e", "--variants=after_f32", "--baseline=HEAD~1",
            "--rounds=1", f"--work_dir={tmp_path}", f"--out={out}"])
  assert [cwd for cwd, _ in calls] == [bts.common.REPO, checkout]
  assert "--config.precision=float32" in calls[1][1]
  records = bts.common.read_records(str(out))
  assert [(r["variant"], r.get("code_commit")) for r in records] == [
      ("after_f32", None), ("baseline", "fe" * 20)]
  assert records[1]["overrides"] == ["precision=float32"]
  lines = report.render_train_speed(records)
  assert any(line.startswith("| 1 | baseline @ fefefefefefe | float32 |") for line in lines)
