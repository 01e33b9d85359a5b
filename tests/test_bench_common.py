"""benchmarks/common.py: provenance, the load rule, records, reading a run's outputs (offline)."""
import argparse
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import common  # noqa: E402  pylint: disable=wrong-import-position

CPUINFO = """\
processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile
processor\t: 1
model name\t: Test CPU 9000
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile
"""


def test_cpu_info_reads_the_model_and_the_named_flags(tmp_path, monkeypatch):
  path = tmp_path / "cpuinfo"
  path.write_text(CPUINFO)
  monkeypatch.setattr(common.platform, "machine", lambda: "x86_64")
  cpu = common.cpu_info(str(path))
  assert cpu == {"model": "Test CPU 9000", "flags": ["avx512_bf16", "amx_tile", "avx512f", "avx2"],
                 "native_bf16": True}
  assert common.bf16_label(cpu) == "native bf16 (avx512_bf16, amx_tile, avx512f, avx2)"


def test_cpu_info_without_bf16_or_without_a_file(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text("model name : Old CPU\nflags : sse2 avx2\n")
  cpu = common.cpu_info(str(path))
  assert cpu["flags"] == ["avx2"] and not cpu["native_bf16"]
  assert common.bf16_label(cpu) == "no native bf16 (avx2)"
  assert common.cpu_info(str(tmp_path / "missing")) == {"model": "", "flags": [],
                                                        "native_bf16": False}


def test_loaded_when_other_work_keeps_more_than_half_the_cores_busy():
  assert not common.is_loaded(0.2, 1.0, 2)        # 1.0 busy of 2 cores: exactly half
  assert common.is_loaded(0.2, 1.1, 2)
  assert common.is_loaded(1.5, None, 2)
  assert not common.is_loaded(None, None, 2)      # unknown is not flagged


def test_loaded_when_the_hypervisor_steals_more_than_the_steal_fraction():
  assert not common.is_loaded(0.0, 0.0, 2, steal=common.LOADED_STEAL_FRACTION)
  assert common.is_loaded(0.0, 0.0, 2, steal=common.LOADED_STEAL_FRACTION + 0.01)
  assert not common.is_loaded(0.0, 0.0, 2, steal=None)


def test_steal_share_between_two_samples_of_the_cpu_counters():
  assert common.steal_share((1000, 800, 10), (2000, 1000, 60)) == 0.05
  assert common.steal_share((1000, 800, 10), (1000, 800, 10)) is None   # no time passed
  assert common.steal_share(None, (2000, 1000, 60)) is None


def test_copy_bandwidth_is_a_positive_rate():
  assert common.copy_gbps(nbytes=2**20, repeats=2) > 0


def test_matmul_speed_is_the_fastest_of_the_products(monkeypatch):
  ticks = iter([0.0, 0.004, 1.0, 1.002, 2.0, 2.003])   # the products take 4, 2 and 3 ms
  monkeypatch.setattr(common.time, "perf_counter", lambda: next(ticks))
  assert common.matmul_gflops(n=100, repeats=3) == 1.0   # 2 * 100**3 FLOP in 2 ms


def test_busy_cores_and_load_average_from_proc_files(tmp_path):
  stat = tmp_path / "stat"
  stat.write_text("cpu  100 0 100 800 0 0 0 30 0 0\ncpu0 1 2 3\n")
  assert common.busy_cores(0, str(stat)) == 0.0   # no time passed between the two reads
  assert common._cpu_times(str(stat)) == (1030, 800, 30)
  loadavg = tmp_path / "loadavg"
  loadavg.write_text("0.83 0.56 0.23 2/96 4582\n")
  assert common.load_average(str(loadavg)) == 0.83
  assert common.load_average(str(tmp_path / "missing")) is None


def test_provenance_has_commit_machine_load_and_the_flag():
  fixed = dict(commit="abc", dirty=False, cpu={"model": "m", "flags": [], "native_bf16": False},
               cores=2, host="h", python="3.11")
  p = common.provenance(fixed, {"load": 0.3, "busy": 0.1}, {"load": 2.1, "busy": 1.6})
  assert (p["commit"], p["dirty"], p["cores"], p["cpu"]["model"]) == ("abc", False, 2, "m")
  assert (p["load_before"], p["load_after"], p["busy_before"], p["busy_after"]) == (
      0.3, 2.1, 0.1, 1.6)
  assert p["loaded"] is True and p["time"]
  assert p["steal_during"] is None and p["copy_gbps_before"] is None   # not sampled
  assert p["matmul_gflops_before"] is None


def test_provenance_flags_a_run_the_hypervisor_stole_from():
  fixed = dict(commit="abc", dirty=False, cpu={"model": "m", "flags": [], "native_bf16": False},
               cores=2, host="h", python="3.11")
  before = {"load": 0.1, "busy": 0.0, "copy_gbps": 15.0, "matmul_gflops": 180.0,
            "cpu_times": (1000, 900, 0)}
  after = {"load": 1.9, "busy": 0.0, "copy_gbps": 9.0, "matmul_gflops": 120.0,
           "cpu_times": (2000, 950, 200)}
  p = common.provenance(fixed, before, after)
  assert (p["steal_during"], p["copy_gbps_before"], p["copy_gbps_after"]) == (0.2, 15.0, 9.0)
  assert (p["matmul_gflops_before"], p["matmul_gflops_after"]) == (180.0, 120.0)
  assert p["loaded"] is True


def test_sample_reads_this_machine():
  s = common.sample()
  assert s["copy_gbps"] > 0 and s["matmul_gflops"] > 0
  assert len(s["cpu_times"]) == 3 and s["busy"] >= 0


def test_machine_names_this_repository_commit():
  m = common.machine()
  assert len(m["commit"]) == 40 and isinstance(m["dirty"], bool)
  assert m["cores"] >= 1 and set(m["cpu"]) == {"model", "flags", "native_bf16"}


def test_records_round_trip_through_json_lines(tmp_path):
  path = str(tmp_path / "sub" / "r.jsonl")
  records = [{"a": 1, "b": [1.5, None]}, {"a": 2, "provenance": {"commit": "x"}}]
  for r in records:
    common.append_record(path, r)
  assert common.read_records(path) == records
  with open(path) as f:
    assert len(f.read().splitlines()) == 2


def test_interleave_runs_every_variant_once_per_round():
  assert common.interleave(range(1, 3), ["a", "b"]) == [(1, "a"), (1, "b"), (2, "a"), (2, "b")]
  assert common.interleave([7, 9], ["a"]) == [(7, "a"), (9, "a")]


def test_trainer_command_and_precision_used():
  command = common.trainer_command("/m", "/d", "/e", ["precision=float32"])
  assert command[1:3] == ["-m", "trainer.task"] and command[-1] == "--config.precision=float32"
  assert "--model_dir=/m" in command and "--strategy=one_device" in command
  assert common.precision_used("x\ndata: ... (1 replica(s) x 32); precision float32\n") == "float32"
  assert common.precision_used("nothing") is None


def test_read_final_reads_eval_results(tmp_path):
  sweep = {"thresholds": [0.1, 0.2, 0.3], "f1": [0.1, 0.2, 0.3]}
  final = {"threshold": 0.2, "train_examples_per_sec": 50.0, "train_padding_efficiency": 0.9,
           "eval_examples_per_sec": {"validation": 100.0, "test": 200.0},
           "validation": {"num_examples": 100, "pr_auc": 0.8, "best_f1": 0.7, "f1": 0.6},
           "test": {"num_examples": 200, "pr_auc": 0.75, "best_f1": 0.65, "f1": 0.5,
                    "threshold_sweep": sweep}}
  (tmp_path / "eval_results.json").write_text(json.dumps({"epochs": [], "final": final}))
  got = common.read_final(str(tmp_path))
  assert got["eval_eps"] == 300 / (100 / 100 + 200 / 200)
  assert (got["train_eps"], got["test_pr_auc"], got["test_f1_tuned"]) == (50.0, 0.75, 0.2)
  assert (got["validation_best_f1"], got["test_f1"]) == (0.7, 0.5)
  assert common.read_final(str(tmp_path / "missing")) is None


def test_run_files_are_read_by_name_and_a_missing_one_is_none(tmp_path):
  (tmp_path / "manifest.json").write_text(json.dumps({"max_seq_length": 128}))
  (tmp_path / "config.json").write_text(json.dumps({"train": {"seed": 3}}))
  assert common.read_manifest(str(tmp_path))["max_seq_length"] == 128
  assert common.read_config(str(tmp_path)) == {"train": {"seed": 3}}
  assert common.read_manifest(str(tmp_path / "missing")) is None
  assert common.read_config(str(tmp_path / "missing")) is None


def test_mean_sd_skips_missing_values():
  assert common.mean_sd([1.0, 3.0, None]) == (2.0, 2 ** 0.5)
  assert common.mean_sd([1.0]) == (1.0, None)
  assert common.mean_sd([None]) == (None, None)


def test_git_state_is_dirty_for_code_changes_but_not_for_new_records(tmp_path):
  def git(*args):
    common.subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
  git("init", "-q")
  (tmp_path / "benchmarks" / "results").mkdir(parents=True)
  (tmp_path / "benchmarks" / "results" / "r.jsonl").write_text("{}\n")
  (tmp_path / "code.py").write_text("x = 1\n")
  git("add", ".")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
  assert common.git_state(str(tmp_path))["dirty"] is False
  (tmp_path / "benchmarks" / "results" / "r.jsonl").write_text("{}\n{}\n")
  assert common.git_state(str(tmp_path))["dirty"] is False
  (tmp_path / "code.py").write_text("x = 2\n")
  state = common.git_state(str(tmp_path))
  assert state["dirty"] is True and len(state["commit"]) == 40


def test_variant_names_keep_order_and_an_unknown_one_is_a_usage_error(capsys):
  parser = argparse.ArgumentParser(prog="bench")
  assert common.variant_names(parser, "b,a", {"a": 1, "b": 2}) == ["b", "a"]
  with pytest.raises(SystemExit) as exit_info:
    common.variant_names(parser, "a,zz", {"a": 1, "b": 2})
  assert exit_info.value.code == 2
  assert "bench: error: unknown variants ['zz']; known: a, b" in capsys.readouterr().err


def test_no_variants_is_a_usage_error_too(capsys):
  with pytest.raises(SystemExit):
    common.variant_names(argparse.ArgumentParser(prog="bench"), ",", {"a": 1})
  assert "bench: error: no variants given; known: a" in capsys.readouterr().err
