"""The vs-PyTorch driver's commands, reading of each side's outputs and summaries (no torch,
no training: canned outputs)."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import bench_vs_pytorch as bvp  # noqa: E402  pylint: disable=wrong-import-position

THRESHOLDS = [round(i / 100, 2) for i in range(1, 100)]
# trainer.task's plan line (trainer/train.py) names the precision policy it resolved.
OURS_OUTPUT = ("data: 100 train / 300 validation / 100 test rows, labels ['a', 'b']; 30 steps per "
               "epoch x 1 epochs = 30 steps of 32 examples (1 replica(s) x 32); precision "
               "mixed_bfloat16\nfinal: validation f1 0.5000\n")


def sweep(f1_of):
  return {"thresholds": THRESHOLDS, "f1": [f1_of(t) for t in THRESHOLDS]}


def write_run(model_dir, eval_rates, eval_batch=64, seed=3):
  os.makedirs(model_dir)
  final = {"threshold": 0.3, "eval_examples_per_sec": eval_rates,
           "train_examples_per_sec": 45.0, "train_padding_efficiency": 0.925,
           "validation": {"num_examples": 300, "pr_auc": 0.7, "best_f1": 0.66,
                          "threshold_sweep": sweep(lambda t: 0.5)},
           "test": {"num_examples": 100, "pr_auc": 0.71, "best_f1": 0.69, "f1": 0.6,
                    "threshold_sweep": sweep(lambda t: 0.62 if t == 0.3 else 0.1)}}
  with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
    json.dump({"epochs": [], "final": final}, f)
  with open(os.path.join(model_dir, "config.json"), "w") as f:
    json.dump({"eval": {"global_batch_size": eval_batch},
               "train": {"seed": seed, "global_batch_size": 32}}, f)


def test_read_ours_reads_eval_results_config_and_the_printed_precision(tmp_path):
  model_dir = str(tmp_path / "ours")
  write_run(model_dir, {"validation": 150.0, "test": 50.0})
  got = bvp.read_ours(model_dir, OURS_OUTPUT)
  assert (got["train_eps"], got["train_padding_efficiency"]) == (45.0, 0.925)
  assert got["eval_eps"] == pytest.approx(400 / (300 / 150 + 100 / 50))   # 100 examples/s
  assert got["eval_eps_by_split"] == {"validation": 150.0, "test": 50.0}
  assert (got["test_pr_auc"], got["test_best_f1"]) == (0.71, 0.69)
  assert got["test_f1_tuned"] == 0.62                   # at the validation's threshold 0.3
  assert (got["threshold"], got["precision"]) == (0.3, "mixed_bfloat16")
  assert (got["eval_batch"], got["seed"], got["batch_size"]) == (64, 3, 32)


def test_read_ours_without_timings_gives_none_not_an_error(tmp_path):
  model_dir = str(tmp_path / "ours")
  write_run(model_dir, {})                              # results written before the timings
  got = bvp.read_ours(model_dir, "no plan line")
  assert got["eval_eps"] is None and got["precision"] is None
  assert got["test_pr_auc"] == 0.71


def test_read_reference_maps_the_reference_json(tmp_path):
  path = tmp_path / "reference.json"
  path.write_text(json.dumps({
      "variant": "pytorch", "train_examples_per_sec": 38.2, "train_padding_efficiency": 0.91,
      "eval_examples_per_sec": {"validation": 120.0, "test": 130.0}, "threshold": 0.29,
      "precision": "float32", "eval_batch": 64, "threads": 2, "seed": 5, "torch": "2.13.0",
      "validation": {"num_examples": 3714, "pr_auc": 0.8, "best_f1": 0.7},
      "test": {"num_examples": 3739, "pr_auc": 0.753, "best_f1": 0.694, "f1_tuned": 0.681}}))
  got = bvp.read_reference(str(path))
  assert got["train_eps"] == 38.2 and got["train_padding_efficiency"] == 0.91
  assert got["eval_eps"] == pytest.approx(7453 / (3714 / 120 + 3739 / 130))
  assert (got["test_pr_auc"], got["test_f1_tuned"], got["test_best_f1"]) == (0.753, 0.681, 0.694)
  assert (got["threshold"], got["precision"], got["eval_batch"]) == (0.29, "float32", 64)
  assert (got["threads"], got["seed"], got["versions"]["torch"]) == (2, 5, "2.13.0")


def parse(tmp_path, *extra):
  args = bvp.parse_args(["--torch_python=/venv/bin/python", "--data_dir=d", "--encoder_dir=e",
                         "--hf_dir=h", "--steps=50", f"--work_dir={tmp_path}", *extra])
  args.ids_dir = "/ids"
  return args


def test_both_sides_get_the_same_steps_seed_eval_batch_and_threads(tmp_path):
  args = parse(tmp_path, "--eval_batch=48", "--threads=3")
  ours = bvp.ours_command(args, "/m", "ours_f32", seed=7)
  assert "--config.train.steps_per_epoch=50" in ours and "--config.train.epochs=1" in ours
  assert "--config.precision=float32" in ours and "--config.train.seed=7" in ours
  assert "--config.eval.global_batch_size=48" in ours
  assert not any("stop_at_step" in a for a in ours)     # the final evaluation must run
  ref = bvp.reference_command(args, "/r/reference.json", "pytorch_bf16", seed=7)
  assert ref[0] == "/venv/bin/python" and ref[1].endswith("benchmarks/pytorch_reference.py")
  for flag in ("--steps=50", "--ids_dir=/ids", "--bf16", "--seed=7", "--eval_batch=48",
               "--threads=3", f"--hf_dir={os.path.abspath('h')}"):
    assert flag in ref
  assert bvp.thread_env(3) == {"OMP_NUM_THREADS": "3", "TF_NUM_INTRAOP_THREADS": "3"}


def test_isa_cap_reaches_both_sides(tmp_path):
  capped = bvp.thread_env(2, "avx2")
  assert capped["ONEDNN_MAX_CPU_ISA"] == "AVX2" and capped["ATEN_CPU_CAPABILITY"] == "avx2"
  assert capped["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and capped["OMP_NUM_THREADS"] == "2"
  assert "--config.precision=float32" in bvp.ours_command(parse(tmp_path), "/m", "ours_f32",
                                                         seed=1)


def test_isa_cap_refuses_variants_whose_precision_follows_the_real_cpu(tmp_path, capsys):
  assert parse(tmp_path, "--isa=avx2", "--variants=pytorch,ours_f32").isa == "avx2"
  with pytest.raises(SystemExit):
    parse(tmp_path, "--isa=avx2", "--variants=pytorch,ours")
  assert "--isa=avx2: ours run in bf16 or as the real CPU picks" in capsys.readouterr().err


def test_each_data_dir_gets_its_own_ids():
  a = bvp.ids_dir_of("/w", "/runs/data/tweets_binary")
  assert a == bvp.ids_dir_of("/w", "/runs/data/tweets_binary/")
  assert a.startswith("/w/ids/tweets_binary-")
  assert a != bvp.ids_dir_of("/w", "/other/tweets_binary")


def test_the_bf16_pair_forces_mixed_bfloat16_on_ours_and_autocast_on_the_reference(tmp_path):
  args = parse(tmp_path, "--variants=pytorch_bf16,ours_bf16")
  assert args.names == ["pytorch_bf16", "ours_bf16"]
  assert "--config.precision=mixed_bfloat16" in bvp.ours_command(args, "/m", "ours_bf16", seed=1)
  assert "--bf16" in bvp.reference_command(args, "/r/x.json", "pytorch_bf16", seed=1)


def test_the_default_variant_sets_no_precision(tmp_path):
  args = parse(tmp_path)
  assert not any("precision" in a for a in bvp.ours_command(args, "/m", "ours", seed=1))
  assert "--bf16" not in bvp.reference_command(args, "/r/x.json", "pytorch", seed=1)


def test_parse_args_reads_seeds_and_rejects_bad_input(tmp_path, capsys):
  assert parse(tmp_path, "--seeds=1,2,3").seed_list == [1, 2, 3]
  with pytest.raises(SystemExit):
    parse(tmp_path, "--variants=pytorch,tf")
  assert "unknown variants ['tf']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    parse(tmp_path, "--steps=20")
  assert "--steps (20) must exceed --skip_steps (20)" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    parse(tmp_path, "--seeds=1,x")
  assert "--seeds must be comma-separated integers" in capsys.readouterr().err


def test_main_writes_one_record_per_seed_and_variant(tmp_path, monkeypatch):
  """The loop with the subprocesses replaced: records carry settings and provenance."""
  ids = bvp.ids_dir_of(str(tmp_path / "work"), os.path.abspath("d"))
  os.makedirs(ids)
  for split in ("train", "validation", "test"):
    open(os.path.join(ids, f"{split}.npz"), "wb").close()

  def fake_run(command, log_path, env=None):
    if "trainer.task" in command:
      model_dir = next(a.split("=", 1)[1] for a in command if a.startswith("--model_dir="))
      write_run(model_dir, {"validation": 150.0, "test": 50.0},
                seed=int(next(a.rsplit("=", 1)[1] for a in command if "train.seed=" in a)))
    else:
      out = next(a.split("=", 1)[1] for a in command if a.startswith("--out="))
      with open(out, "w") as f:
        json.dump({"train_examples_per_sec": 40.0, "train_padding_efficiency": 0.95,
                   "eval_examples_per_sec": {"validation": 100.0, "test": 100.0},
                   "threshold": 0.3, "precision": "float32", "eval_batch": 64, "threads": 2,
                   "seed": 1, "batch_size": 32, "validation": {"num_examples": 300}, "test": {
                       "num_examples": 100, "pr_auc": 0.7, "f1_tuned": 0.6, "best_f1": 0.65}}, f)
    return {"seconds": 12.0, "returncode": 0, "output": OURS_OUTPUT, "log": log_path}

  monkeypatch.setattr(bvp.common, "run_logged", fake_run)
  monkeypatch.setattr(bvp.common, "sample", lambda: {"load": 0.1, "busy": 0.05})
  out = tmp_path / "records.jsonl"
  bvp.main(["--torch_python=p", "--data_dir=d", "--encoder_dir=e", "--hf_dir=h",
            f"--work_dir={tmp_path / 'work'}", f"--out={out}", "--seeds=1,2",
            "--variants=pytorch,ours"])
  records = bvp.common.read_records(str(out))
  assert [(r["seed"], r["variant"], r["side"]) for r in records] == [
      (1, "pytorch", "pytorch"), (1, "ours", "ours"), (2, "pytorch", "pytorch"),
      (2, "ours", "ours")]
  assert {r["ids_dir"] for r in records} == {ids}
  ours = records[1]
  assert (ours["precision"], ours["eval_batch"], ours["threads"]) == ("mixed_bfloat16", 64, 2)
  assert records[0]["batch_size"] == ours["batch_size"] == 32
  assert ours["wall_seconds"] == 12.0 and ours["env"]["TF_NUM_INTRAOP_THREADS"] == "2"
  assert ours["command"][1:3] == ["-m", "trainer.task"]
  assert ours["provenance"]["loaded"] is False and "commit" in ours["provenance"]
