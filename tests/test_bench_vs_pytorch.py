"""The vs-PyTorch driver's parsing and summaries, on canned outputs (no torch, no training)."""
import json
import os
import sys

import pytest

# benchmarks/ is not an installed package: import it from the repository root.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_vs_pytorch as bvp  # noqa: E402  pylint: disable=wrong-import-position

THRESHOLDS = [round(i / 100, 2) for i in range(1, 100)]

# What trainer.task prints (trainer/train.py's progress lines): the first window holds tracing.
OURS_STDOUT = """\
plan: 30 steps
step 10/30 epoch 1/1 loss 0.6900 examples/s 5.0 padding efficiency 0.800 lr 5e-05 eta 0:01:00
step 20/30 epoch 1/1 loss 0.6000 examples/s 40.0 padding efficiency 0.900 lr 2.5e-05 eta 0:00:10
step 30/30 epoch 1/1 loss 0.5000 examples/s 50.0 padding efficiency 0.950 lr 0 eta 0:00:00
epoch 1 validation: loss 0.5000, pr_auc 0.6000
final: validation f1 0.5000
"""


def sweep(f1_of):
  return {"thresholds": THRESHOLDS, "f1": [f1_of(t) for t in THRESHOLDS]}


def write_results(model_dir, eval_rates):
  os.makedirs(model_dir)
  final = {"threshold": 0.3, "eval_examples_per_sec": eval_rates,
           "validation": {"num_examples": 300, "pr_auc": 0.7, "best_f1": 0.66,
                          "threshold_sweep": sweep(lambda t: 0.5)},
           "test": {"num_examples": 100, "pr_auc": 0.71, "best_f1": 0.69, "f1": 0.6,
                    "threshold_sweep": sweep(lambda t: 0.62 if t == 0.3 else 0.1)}}
  with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
    json.dump({"epochs": [], "final": final}, f)


def test_parse_ours_reads_progress_lines_and_eval_results(tmp_path):
  model_dir = str(tmp_path / "ours")
  write_results(model_dir, {"validation": 150.0, "test": 50.0})
  got = bvp.parse_ours(model_dir, OURS_STDOUT)
  assert got["train_eps"] == 45.0                       # the first window is left out
  assert got["train_padding_efficiency"] == pytest.approx(0.925)
  assert got["eval_eps"] == pytest.approx(400 / (300 / 150 + 100 / 50))   # 100 examples/s
  assert got["eval_eps_by_split"] == {"validation": 150.0, "test": 50.0}
  assert (got["test_pr_auc"], got["test_best_f1"]) == (0.71, 0.69)
  assert got["test_f1_tuned"] == 0.62                   # at the validation's threshold 0.3
  assert got["threshold"] == 0.3


def test_parse_ours_without_timings_gives_none_not_an_error(tmp_path):
  model_dir = str(tmp_path / "ours")
  write_results(model_dir, {})                          # results written before the timings
  got = bvp.parse_ours(model_dir, OURS_STDOUT.splitlines()[1])   # one (tracing) window only
  assert got["train_eps"] is None and got["eval_eps"] is None
  assert got["test_pr_auc"] == 0.71


def test_read_reference_maps_the_reference_json(tmp_path):
  path = tmp_path / "reference.json"
  path.write_text(json.dumps({
      "variant": "pytorch", "train_examples_per_sec": 38.2, "train_padding_efficiency": 0.91,
      "eval_examples_per_sec": {"validation": 120.0, "test": 130.0}, "threshold": 0.29,
      "validation": {"num_examples": 3714, "pr_auc": 0.8, "best_f1": 0.7},
      "test": {"num_examples": 3739, "pr_auc": 0.753, "best_f1": 0.694, "f1_tuned": 0.681}}))
  got = bvp.read_reference(str(path))
  assert got["train_eps"] == 38.2 and got["train_padding_efficiency"] == 0.91
  assert got["eval_eps"] == pytest.approx(7453 / (3714 / 120 + 3739 / 130))
  assert (got["test_pr_auc"], got["test_f1_tuned"], got["test_best_f1"]) == (0.753, 0.681, 0.694)
  assert got["threshold"] == 0.29


def record(variant, round_, train, eval_, wall, pr_auc=0.7):
  return {"variant": variant, "round": round_, "train_eps": train, "eval_eps": eval_,
          "wall_seconds": wall, "test_pr_auc": pr_auc, "test_f1_tuned": 0.6,
          "test_best_f1": 0.65}


def test_median_ratio_pairs_runs_of_the_same_round():
  records = [record("pytorch", 1, 40.0, 100.0, 200.0), record("ours", 1, 60.0, 150.0, 100.0),
             record("pytorch", 2, 20.0, 100.0, 400.0), record("ours", 2, 40.0, None, 100.0),
             record("ours", 3, 99.0, 99.0, 99.0)]        # round 3 has no reference: ignored
  assert bvp.median_ratio(records, "ours", "pytorch", "train_eps") == pytest.approx(1.75)
  assert bvp.median_ratio(records, "ours", "pytorch", "eval_eps") == pytest.approx(1.5)
  assert bvp.median_ratio(records, "ours", "pytorch", "wall_seconds") == pytest.approx(0.375)
  lines = bvp.summary_lines(records, ["pytorch", "ours"])
  assert lines[0].startswith("pytorch ") and "train_eps 30.0 (x1.00)" in lines[0]
  assert "train_eps 60.0 (x1.75)" in lines[1] and "test_pr_auc 0.7000" in lines[1]


def test_commands_carry_the_steps_and_the_variant_flags(tmp_path):
  args = bvp.parse_args(["--torch_python=/venv/bin/python", "--data_dir=d", "--encoder_dir=e",
                         "--hf_dir=h", "--steps=50", f"--work_dir={tmp_path}"])
  args.ids_dir = "/ids"
  ours = bvp.ours_command(args, "/m", bvp.OURS["ours_f32"])
  assert "--config.train.steps_per_epoch=50" in ours and "--config.train.epochs=1" in ours
  assert "--config.precision=float32" in ours and "--config.train.log_every_steps=20" in ours
  assert not any("stop_at_step" in a for a in ours)     # the final evaluation must run
  ref = bvp.reference_command(args, "/r/reference.json", bvp.REFERENCE["pytorch_bf16"])
  assert ref[0] == "/venv/bin/python" and ref[1].endswith("benchmarks/pytorch_reference.py")
  assert "--steps=50" in ref and "--ids_dir=/ids" in ref and "--bf16" in ref
  assert f"--hf_dir={os.path.abspath('h')}" in ref


def test_parse_args_rejects_unknown_variants_and_too_few_steps(capsys):
  base = ["--torch_python=p", "--data_dir=d", "--encoder_dir=e", "--hf_dir=h"]
  with pytest.raises(SystemExit):
    bvp.parse_args(base + ["--variants=pytorch,tf"])
  assert "unknown variants ['tf']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    bvp.parse_args(base + ["--steps=20"])
  assert "--steps (20) must exceed --skip_steps (20)" in capsys.readouterr().err
