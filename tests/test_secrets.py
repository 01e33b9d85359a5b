"""Offline and secrets: the W&B API key never leaks, and the suite really runs with no network.

A sentinel WANDB_API_KEY with WANDB_MODE=offline through the real entry points: preprocessing
(with --wandb_project) and then training on its output. Neither may print the key, write it to
any file (outputs, model dir, W&B run dirs, W&B cache / config / home) or put it in a W&B config.
"""
import glob
import json
import os
import socket
import struct
import subprocess
import sys

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import pytest
from wandb.proto import wandb_internal_pb2

SENTINEL = "SENTINEL-wandb-key-1f0e2d3c4b5a69788796a5b4c3d2e1f0abcdef12"


def wandb_records(path):
  """The records of an offline run's .wandb file, whole (a byte scan of the file could miss a
  string cut in two by the log format's 32 KiB blocks): [(serialized bytes, Record)]."""
  data = open(path, "rb").read()
  assert data[:4] == b":W&B", path
  block, pos, parts, out = 32768, 7, [], []      # a 7-byte file header, then LevelDB's log
  while pos < len(data):
    if block - pos % block < 7:                  # too small for a record header: padding
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])   # crc32c, length, type
    if kind == 0:                                # zero padding to the block's end
      pos += block - pos % block
      continue
    parts.append(data[pos + 7:pos + 7 + length])
    pos += 7 + length
    if kind in (1, 4):                           # FULL or LAST: the record is complete
      record = wandb_internal_pb2.Record()
      record.ParseFromString(b"".join(parts))
      out.append((b"".join(parts), record))
      parts = []
  return out


def wandb_config(records):
  """The run config ({key: value}) that the records set."""
  config = {}
  for _, record in records:
    kind = record.WhichOneof("record_type")
    if kind in ("run", "config"):
      updates = record.run.config.update if kind == "run" else record.config.update
      config.update({u.key: json.loads(u.value_json) for u in updates})
  return config


def test_the_api_key_is_never_printed_written_or_logged(tmp_path):
  vocab = fx.write_vocab(str(tmp_path))
  rows = fx.example_rows(120, seed=11)
  with open(tmp_path / "in.csv", "w", encoding="utf-8") as f:
    f.write("qid,question_text,target\n")
    for example_id, ids, _, label_ids in rows:
      f.write(f"{example_id},{' '.join(fx.VOCAB[i] for i in ids[1:-1])},{label_ids[0]}\n")
  data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "model")
  home = tmp_path / "home"
  home.mkdir()
  env = fx.task_env(
      WANDB_MODE="offline", WANDB_API_KEY=SENTINEL, HOME=str(home),
      WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb_cfg"),
      WANDB_DATA_DIR=str(tmp_path / "wandb_data"),
      WANDB_ARTIFACT_DIR=str(tmp_path / "wandb_artifacts"))
  # Preprocessing logs to WANDB_DIR (else ./wandb); the trainer to model_dir/wandb.
  preprocess = subprocess.run(
      [sys.executable, "-m", "preprocess.run", f"--input={tmp_path / 'in.csv'}",
       f"--output_dir={data_dir}", f"--vocab_file={vocab}", "--labels=0,1", "--num_shards=2",
       "--max_seq_length=32", "--wandb_project=secrets-test"],
      env=dict(env, WANDB_DIR=str(tmp_path / "wandb_preprocess")), cwd=fx.REPO,
      capture_output=True, text=True, timeout=300)
  assert preprocess.returncode == 0, preprocess.stdout[-2000:] + preprocess.stderr[-3000:]
  assert "120 rows read, 120 written" in preprocess.stdout
  command = fx.task_command(data_dir, model_dir, "--config.train.epochs=1",
                            "--config.wandb.mode=auto")
  command = [c for c in command if not c.startswith("--config.encoder.vocab_file=")] + [
      f"--config.encoder.vocab_file={vocab}"]
  training = subprocess.run(command, env=env, cwd=fx.REPO, capture_output=True, text=True,
                            timeout=300)
  assert training.returncode == 0, training.stdout[-2000:] + training.stderr[-3000:]
  assert os.path.exists(os.path.join(model_dir, "export", "saved_model.pb"))

  for proc in (preprocess, training):
    assert SENTINEL not in proc.stdout + proc.stderr
  # W&B really ran offline: one preprocessing run, and train / evaluate / save runs.
  pre_runs = glob.glob(str(tmp_path / "wandb_preprocess" / "wandb" / "offline-run-*"))
  train_runs = glob.glob(os.path.join(model_dir, "wandb", "offline-run-*"))
  assert (len(pre_runs), len(train_runs)) == (1, 3), (pre_runs, train_runs)
  for run in pre_runs + train_runs:
    (path,) = glob.glob(os.path.join(run, "*.wandb"))
    records = wandb_records(path)
    assert len(records) > 5
    for serialized, _ in records:
      assert SENTINEL.encode() not in serialized, path
    config = wandb_config(records)
    assert ("labels" if run in pre_runs else "train") in config, sorted(config)
    assert SENTINEL not in json.dumps(config), path
  scanned = 0
  for root, _, names in os.walk(tmp_path):
    for name in names:
      path = os.path.join(root, name)
      if os.path.isfile(path) and not os.path.islink(path):
        with open(path, "rb") as f:
          assert SENTINEL.encode() not in f.read(), path
        scanned += 1
  assert scanned > 50, scanned


@pytest.mark.skipif(os.environ.get("CI_OFFLINE") != "1",
                    reason="scripts/test.sh sets CI_OFFLINE=1 inside its `unshare -n` namespace")
def test_the_suite_runs_without_a_network():
  assert [name for _, name in socket.if_nameindex()] == ["lo"]
  with pytest.raises(OSError):
    socket.create_connection(("1.1.1.1", 443), timeout=5).close()
  with pytest.raises(OSError):
    socket.getaddrinfo("example.com", 443)   # no name resolves without a network
  with socket.create_server(("127.0.0.1", 0)) as server:   # loopback is up (multi-worker)
    socket.create_connection(server.getsockname(), timeout=5).close()
