"""What a new user sees: every CLI's --help and a tiny normal run print no TF / Beam log noise.

Each CLI runs in a subprocess with the user's environment minus TF_CPP_MIN_LOG_LEVEL (this
test process has it set by bertcore), so the defaults of bertcore.env are what is tested.
Noise: TensorFlow / absl C++ log lines (`E0000 00:00:...`, `2026-01-01 12:00:00.000: E ...`,
e.g. `failed call to cuInit`), Python logging in its default format (`WARNING:root:...`,
`INFO:absl:...`) and Beam's import-time notes about missing cloud extras.
"""
import os
import re
import subprocess
import sys

import pytest

import helpers
import trainer_fixtures as fx

REPO = fx.REPO
NOISE = re.compile("|".join([
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d",                     # absl C++ logging
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",   # TensorFlow C++ logging
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]*:",    # Python logging, default format
    r"^Failed to import \w+FileSystem",                 # Beam, logged before any handler
    r"apitools not found",
]))


def noise(result):
  return [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]


def run_cli(module, *args):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(WANDB_MODE="disabled", PYTHONPATH=REPO)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def assert_quiet(result, returncodes=(0,)):
  assert result.returncode in returncodes, result.stderr[-2000:]
  assert noise(result) == []
  assert result.stderr == ""


def test_noise_pattern_matches_the_lines_users_saw():
  seen = [
      "2026-11-28 21:47:30.834466: E external/local_xla/xla/stream_executor/cuda/"
      "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: "
      "UNKNOWN ERROR (303)",
      "2026-11-28 21:47:24.905113: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:31] Could "
      "not find cuda drivers on your machine, GPU will not be used.",
      "W0000 00:00:1732831650.123456   123 cpu_feature_guard.cc:210] This TensorFlow binary",
      "Failed to import GCSFileSystem; loading of this filesystem will be skipped.",
      "WARNING:root:apitools not found, and bigquery client libraries are not available",
      "INFO:absl:Sharding callback duration: 29 microseconds",
  ]
  assert [bool(NOISE.search(line)) for line in seen] == [True] * len(seen)
  ours = ["preprocess: 31 rows read, 31 written (train=25, validation=3, test=3)",
          "warning: discovered label '7' is on only 1 of 31 rows (3.23%)",
          "error: no input files match x.csv", "step 4/10 epoch 1/1 loss 0.7007"]
  assert [bool(NOISE.search(line)) for line in ours] == [False] * len(ours)


@pytest.mark.parametrize("module", ["preprocess.run", "trainer.task", "serving.predict",
                                    "trainer.predict", "scoring.run", "trainer.convert",
                                    "launch.submit"])
def test_help_is_quiet(module):
  result = run_cli(module, "--help")
  assert_quiet(result, returncodes=(0, 1))  # absl's --help (trainer.task) exits 1
  assert "--" in result.stdout  # the flags are listed


def test_preprocess_run_is_quiet(tmp_path):
  fx.write_vocab(str(tmp_path))
  rows = ["id,text,label"] + [f"r{i},good w{i % 26},{i % 2}" for i in range(40)]
  (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
  result = run_cli("preprocess.run", f"--input={tmp_path / 'in.csv'}",
                   f"--output_dir={tmp_path / 'data'}", f"--vocab_file={tmp_path / 'vocab.txt'}",
                   "--id_column=id", "--text_column=text", "--label_column=label",
                   "--num_shards=1")
  assert_quiet(result)
  summary, = result.stdout.splitlines()
  assert summary.startswith("preprocess: 40 rows read, 40 written")
  assert "labels {0: 20, 1: 20}" in summary


def test_convert_is_quiet(tmp_path):
  hf_dir = helpers.write_hf_dir(tmp_path / "hf")
  result = run_cli("trainer.convert", f"--hf_dir={hf_dir}", f"--output_dir={tmp_path / 'enc'}")
  assert_quiet(result)
  assert result.stdout == (f"convert: wrote {tmp_path / 'enc'} (2 layers, hidden 32, "
                           "hidden_act gelu_exact)\n")


def test_launch_dry_run_is_quiet():
  result = run_cli("launch.submit", "dataflow", "--project=p", "--region=europe-west4",
                   "--staging_bucket=gs://bkt", "--job_name=prep", "--dry_run", "--",
                   "--input=gs://bkt/x.csv", "--output_dir=gs://bkt/data",
                   "--vocab_file=gs://bkt/vocab.txt")
  assert_quiet(result)
  assert '"target": "dataflow"' in result.stdout


@pytest.mark.slow
def test_train_and_predict_are_quiet(tmp_path):
  data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "model")
  fx.tiny_data_dir(data_dir, n_train=64, n_val=32, n_test=32)
  fx.write_vocab(data_dir)
  result = run_cli(*fx.task_command(data_dir, model_dir, "--config.train.epochs=1")[2:])
  assert_quiet(result)
  devices = result.stdout.splitlines()[0]
  assert re.fullmatch(r"devices: \d+ replicas? on (CPU|GPU|TPU) \(.+\); precision float32",
                      devices), devices

  (tmp_path / "unlabeled.csv").write_text("id,text\na,good w1\nb,bad w2 w3\n")
  result = run_cli("serving.predict", f"--model={model_dir}/export",
                   f"--input={tmp_path / 'unlabeled.csv'}", "--id_column=id",
                   "--text_column=text", f"--output={tmp_path / 'predictions.csv'}")
  assert_quiet(result)
  assert result.stdout.startswith("predict: done: 2 rows, 2 predicted")
