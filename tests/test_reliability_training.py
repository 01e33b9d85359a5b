"""Reliability of training under injected faults, on real `python -m trainer.task` processes.

Kills are deterministic: trainer/faults.py makes a process send itself SIGKILL (or the signal in
BERTFT_CRASH_SIGNAL) on its n-th arrival at a named point, BERTFT_CRASH_AT=<point>[:<n>].
One model_dir goes through the stages below in order, each stage a process killed at the next
point and, at the same time, the re-run (same command) of the previous one:

  stage  fault                               the process resumes from   leaves
  1      SIGKILL after step 6 (train_step)   -                          ckpt-4
  2      SIGKILL writing ckpt-8              ckpt-4                     ckpt-4 (+ unnamed ckpt-8 files)
  3      SIGKILL in epoch 1's evaluation     ckpt-4                     ckpt-8, no results
  4      SIGKILL writing best/ckpt-8         ckpt-8                     no best
  5      SIGTERM in epoch 2's evaluation     ckpt-8                     ckpt-16, epoch 1 results
  6      SIGKILL exporting                   ckpt-16                    no export/
  7      -                                   ckpt-16                    a finished run
and the finished run's weights and optimizer state must equal, bit for bit, those of an
uninterrupted run: no batch was repeated or skipped. (Steps differ by ~0.04 in some weight.)

Other faults: corrupt / truncated shards, incomplete manifests, an unwritable or full disk.
Slow-ish by nature (each trainer process imports TensorFlow): ~10-25 s per process on 2 cores.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from bertcore import schema
from trainer import strategy as strategy_lib
from trainer import train

STEPS_PER_EPOCH, TOTAL = 8, 16           # 128 train rows / batch 16, 2 epochs (configs/tiny.py)
FLAGS = ("--config.train.checkpoint_every_steps=4", "--config.train.log_every_steps=2")
TIMEOUT = 300


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(d, n_train=128, n_val=64, n_test=32)
  fx.write_vocab(d)
  return d


@pytest.fixture(autouse=True)
def float32_policy():
  yield
  strategy_lib.set_precision("float32")


def run_task(data_dir, model_dir, *flags, crash_at=None, signal_name="KILL", env=None):
  """Runs the trainer; returns (returncode, output, seconds from the fault line to the exit)."""
  extra = {"BERTFT_CRASH_AT": crash_at, "BERTFT_CRASH_SIGNAL": signal_name} if crash_at else {}
  proc = subprocess.Popen(fx.task_command(data_dir, model_dir, *flags),
                          env=env or fx.task_env(**extra), cwd=fx.REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  lines, fault_time = [], None
  deadline = time.monotonic() + TIMEOUT
  for line in proc.stdout:
    lines.append(line)
    if line.startswith("fault injection:"):
      fault_time = time.monotonic()
    if time.monotonic() > deadline:
      proc.kill()
  proc.wait(timeout=60)
  after_fault = None if fault_time is None else time.monotonic() - fault_time
  return proc.returncode, "".join(lines), after_fault


def checkpoint_state(directory):
  """(latest prefix or None, [all recorded prefixes]) from a checkpoint directory."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return None, []
  return tf.train.latest_checkpoint(directory), list(state.all_model_checkpoint_paths)


def read_checkpoint(prefix):
  """{name: value} of every tensor in a checkpoint (reading checks each tensor's checksum)."""
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def assert_valid_checkpoint(prefix, step):
  values = read_checkpoint(prefix)
  assert int(values["step/.ATTRIBUTES/VARIABLE_VALUE"]) == step
  assert sum(name.startswith("model/") for name in values) > 20
  assert sum(".OPTIMIZER_SLOT/optimizer/" in name for name in values) > 20   # Adam's m and v
  for name, value in values.items():
    if np.asarray(value).dtype.kind == "f":
      assert np.isfinite(value).all(), name


def logged_steps(output):
  return [int(m) for m in re.findall(r"^step (\d+)/\d+ epoch", output, re.M)]


def results(model_dir):
  path = os.path.join(model_dir, "eval_results.json")
  return json.load(open(path)) if os.path.exists(path) else None


# ------------------------------------------------------------------- kills at 5 points + SIGTERM
class Chain:
  """The model_dir that the stage tests below take through one fault after another."""

  def __init__(self, data_dir, model_dir):
    self.data_dir, self.model_dir = data_dir, model_dir
    self.ckpt_dir = os.path.join(model_dir, "checkpoints")
    self.best_dir = os.path.join(model_dir, "best")
    self.stage = 0
    self.broken = None

  def run(self, stage, crash_at=None, signal_name="KILL"):
    if self.broken:
      pytest.skip(f"stage {self.broken} of the chain failed; this stage resumes from it")
    assert self.stage == stage - 1, "the chain's stages must run in order"
    self.stage = stage
    self.broken = stage    # until the test says otherwise
    return run_task(self.data_dir, self.model_dir, *FLAGS, crash_at=crash_at,
                    signal_name=signal_name)

  def passed(self):
    self.broken = None

  def resumed_from(self, output, step):
    where = (f"all {TOTAL} steps done" if step == TOTAL else
             f"epoch {step // STEPS_PER_EPOCH + 1}, {step % STEPS_PER_EPOCH} of its "
             f"{STEPS_PER_EPOCH} steps done")
    return f"resuming from {self.ckpt_dir}/ckpt-{step}: step {step} ({where})" in output


@pytest.fixture(scope="module")
def chain(data_dir, tmp_path_factory):
  return Chain(data_dir, str(tmp_path_factory.mktemp("chain") / "run"))


def test_1_kill_mid_step_keeps_the_last_checkpoint(chain):
  code, out, _ = chain.run(1, "train_step:6")
  assert code == -signal.SIGKILL, out[-3000:]
  assert "fault injection: SIGKILL at train_step (arrival 6)" in out
  assert logged_steps(out) == [2, 4]
  latest, recorded = checkpoint_state(chain.ckpt_dir)
  assert (latest, recorded) == (f"{chain.ckpt_dir}/ckpt-4", [f"{chain.ckpt_dir}/ckpt-4"])
  assert_valid_checkpoint(latest, 4)
  assert results(chain.model_dir) is None
  chain.passed()


def test_2_kill_mid_checkpoint_write_never_makes_it_latest(chain):
  code, out, _ = chain.run(2, "checkpoint_write")
  assert code == -signal.SIGKILL, out[-3000:]
  assert chain.resumed_from(out, 4), out[-3000:]
  assert "epoch 1: skipping the 4 batches trained before the restart" in out
  assert "fault injection: SIGKILL at checkpoint_write (arrival 1)" in out
  assert logged_steps(out) == [6, 8]
  # ckpt-8's files were complete on disk, but the state file never named it.
  assert os.path.exists(os.path.join(chain.ckpt_dir, "ckpt-8.index"))
  latest, recorded = checkpoint_state(chain.ckpt_dir)
  assert (latest, recorded) == (f"{chain.ckpt_dir}/ckpt-4", [f"{chain.ckpt_dir}/ckpt-4"])
  assert_valid_checkpoint(latest, 4)
  chain.passed()


def test_3_kill_during_evaluation_keeps_the_epoch_unevaluated(chain):
  code, out, _ = chain.run(3, "evaluation")
  assert code == -signal.SIGKILL, out[-3000:]
  assert chain.resumed_from(out, 4), out[-3000:]     # not the unnamed ckpt-8 of stage 2
  assert "fault injection: SIGKILL at evaluation (arrival 1)" in out
  assert logged_steps(out) == [6, 8]
  latest, _ = checkpoint_state(chain.ckpt_dir)
  assert latest == f"{chain.ckpt_dir}/ckpt-8"
  assert_valid_checkpoint(latest, 8)
  assert results(chain.model_dir) is None            # epoch 1 was never recorded
  chain.passed()


def test_4_kill_mid_best_checkpoint_write_leaves_no_best(chain):
  code, out, _ = chain.run(4, "best_checkpoint_write")
  assert code == -signal.SIGKILL, out[-3000:]
  assert chain.resumed_from(out, 8), out[-3000:]
  assert "fault injection: SIGKILL at best_checkpoint_write (arrival 1)" in out
  assert logged_steps(out) == []                     # the pending evaluation comes first
  assert os.path.exists(os.path.join(chain.best_dir, "ckpt-8.index"))
  assert checkpoint_state(chain.best_dir) == (None, [])
  assert results(chain.model_dir) is None
  chain.passed()


def test_5_sigterm_during_evaluation_checkpoints_and_exits_143_within_30s(chain):
  # Fault at the 3rd evaluation batch: the pending epoch-1 evaluation has 2, so this is the
  # first batch of epoch 2's evaluation, after steps 9-16.
  code, out, after_fault = chain.run(5, "evaluation:3", signal_name="TERM")
  assert code == 143, out[-3000:]
  assert chain.resumed_from(out, 8), out[-3000:]
  assert "fault injection: SIGTERM at evaluation (arrival 3)" in out
  assert out.count("preempted: checkpoint saved at step 16") == 1
  assert after_fault < 30, after_fault
  assert logged_steps(out) == [10, 12, 14, 16]       # epoch 1 is not trained again
  assert out.count("epoch 1 validation:") == 1 and "epoch 2 validation:" not in out
  assert [(e["epoch"], e["step"], e["best"]) for e in results(chain.model_dir)["epochs"]] == [
      (1, 8, True)]
  latest, _ = checkpoint_state(chain.ckpt_dir)
  assert latest == f"{chain.ckpt_dir}/ckpt-16"
  assert_valid_checkpoint(latest, 16)
  assert checkpoint_state(chain.best_dir)[0] == f"{chain.best_dir}/ckpt-8"
  chain.passed()


def test_6_kill_during_export_leaves_no_half_export(chain):
  code, out, _ = chain.run(6, "export")
  assert code == -signal.SIGKILL, out[-3000:]
  assert chain.resumed_from(out, 16), out[-3000:]
  assert "fault injection: SIGKILL at export (arrival 1)" in out
  assert logged_steps(out) == []
  assert "epoch 2 validation:" in out and "final evaluation of the best checkpoint" in out
  assert not os.path.exists(os.path.join(chain.model_dir, "export"))
  staged = [n for n in os.listdir(chain.model_dir) if n.startswith("export.tmp-")]
  assert len(staged) == 1      # complete, but never moved into place
  written = results(chain.model_dir)
  assert [e["epoch"] for e in written["epochs"]] == [1, 2] and "final" not in written
  chain.passed()


def test_7_rerun_finishes_exactly_like_an_uninterrupted_run(chain, data_dir, tmp_path):
  code, out, _ = chain.run(7)
  assert code == 0, out[-3000:]
  assert chain.resumed_from(out, 16), out[-3000:]
  assert logged_steps(out) == [] and " validation:" not in out   # nothing re-evaluated
  written = results(chain.model_dir)
  assert written["final"]["step"] == written["final"]["total_steps"] == TOTAL
  assert [(e["epoch"], e["step"]) for e in written["epochs"]] == [(1, 8), (2, 16)]
  names = os.listdir(chain.model_dir)
  assert "export" in names and not [n for n in names if n.startswith("export.")]
  latest, _ = checkpoint_state(chain.ckpt_dir)
  assert latest == f"{chain.ckpt_dir}/ckpt-16"
  assert_valid_checkpoint(latest, 16)
  loaded = tf.saved_model.load(os.path.join(chain.model_dir, "export"))
  probabilities = loaded.signatures["serving_default"](text=tf.constant(["good w1", "bad"]))
  assert probabilities["probabilities"].shape == (2,)

  # The same run without faults, in this process.
  reference_dir = str(tmp_path / "reference")
  config = fx.tiny_config(data_dir, **{"train.checkpoint_every_steps": 4,
                                       "train.log_every_steps": 2, "export": False})
  reference = train.train_and_evaluate(config, data_dir, reference_dir,
                                       strategy_lib.build_strategy("one_device"))
  got = read_checkpoint(latest)
  want = read_checkpoint(os.path.join(reference_dir, "checkpoints", "ckpt-16"))
  assert got.keys() == want.keys()
  for name in want:
    if name != "save_counter/.ATTRIBUTES/VARIABLE_VALUE":   # counts saves, not steps
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  for key in ("validation", "test", "best_step", "threshold", "source"):
    assert written["final"][key] == reference["final"][key], key
  assert [e["validation"] for e in written["epochs"]] == [
      e["validation"] for e in reference["epochs"]]
  chain.passed()


# ---------------------------------------------------------------- corrupt data, bad manifests
@pytest.fixture(scope="module")
def corrupt_data_dir(data_dir, tmp_path_factory):
  """data_dir with train shard 1 cut mid-record and one byte of validation shard 0 flipped."""
  d = str(tmp_path_factory.mktemp("corrupt") / "data")
  shutil.copytree(data_dir, d)
  truncated = os.path.join(d, "train", "train-00001-of-00002.tfrecord")
  data = open(truncated, "rb").read()
  open(truncated, "wb").write(data[:len(data) // 2])
  flipped = os.path.join(d, "validation", "validation-00000-of-00002.tfrecord")
  data = bytearray(open(flipped, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(flipped, "wb").write(bytes(data))
  return d, truncated, flipped


def last_line(output):
  return output.strip().splitlines()[-1]


def test_a_corrupt_shard_is_named_before_training(corrupt_data_dir, tmp_path):
  d, truncated, _ = corrupt_data_dir
  code, out, _ = run_task(d, str(tmp_path / "run"))
  assert code == 1, out[-3000:]
  assert re.fullmatch(
      rf"error: shard {re.escape(truncated)} (is corrupt \(truncated record at \d+\)|holds \d+ "
      r"records but the manifest says 32 \(truncated or replaced\)); re-run preprocessing, or "
      r"set --config.data.on_corrupt_shard=skip to train without it", last_line(out)), out
  assert "Traceback" not in out and not logged_steps(out)
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_corrupt_shard_read_during_training_is_named(corrupt_data_dir, tmp_path):
  d, truncated, _ = corrupt_data_dir
  code, out, _ = run_task(d, str(tmp_path / "run"), "--config.data.verify_shards=false")
  assert code == 1, out[-3000:]
  assert re.fullmatch(rf"error: shard {re.escape(truncated)} is corrupt \(truncated record at "
                      r"\d+\); re-run preprocessing, or set --config.data.on_corrupt_shard=skip",
                      last_line(out)), out
  assert "Traceback" not in out and not os.path.exists(tmp_path / "run" / "checkpoints")


def test_corrupt_shards_can_be_skipped_and_are_counted(corrupt_data_dir, tmp_path):
  d, truncated, flipped = corrupt_data_dir
  code, out, _ = run_task(d, str(tmp_path / "run"), "--config.data.on_corrupt_shard=skip",
                          "--config.train.epochs=1", "--config.export=false")
  assert code == 0, out[-3000:]
  assert f"warning: skipped 2 bad shard(s): ['{truncated}', '{flipped}']" in out
  assert "data: 64 train / 32 validation / 32 test rows" in out   # the good shards' rows
  final = results(str(tmp_path / "run"))["final"]
  assert [s["file"] for s in final["skipped_shards"]] == [truncated, flipped]
  assert re.fullmatch(r"is corrupt \(corrupted record at \d+\)",
                      final["skipped_shards"][1]["problem"])
  assert final["validation"]["num_examples"] == 32
  assert final["step"] == 4


@pytest.mark.parametrize("damage,message", [
    ("truncate", "is not valid JSON"),
    ("no_splits", "lacks splits"),
    ("no_shard", "validation-00001-of-00002.tfrecord is missing"),
])
def test_an_incomplete_manifest_or_data_dir_is_refused(data_dir, tmp_path, damage, message):
  d = str(tmp_path / "data")
  shutil.copytree(data_dir, d)
  path = os.path.join(d, schema.MANIFEST)
  text = open(path).read()
  if damage == "truncate":                 # e.g. a copy cut short
    open(path, "w").write(text[:len(text) // 2])
  elif damage == "no_splits":
    manifest = json.loads(text)
    del manifest["splits"]
    open(path, "w").write(json.dumps(manifest))
  else:
    os.remove(os.path.join(d, "validation", "validation-00001-of-00002.tfrecord"))
  with pytest.raises(schema.DataError, match=re.escape(message)):
    train.train_and_evaluate(fx.tiny_config(d), d, str(tmp_path / "run"),
                             strategy_lib.build_strategy("one_device"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


# ------------------------------------------------------------------- unwritable and full disks
# Root ignores file modes, so read-only and full disks are real tmpfs mounts, made inside a
# private mount namespace (`unshare -m`) by this driver; it prints one JSON line of results.
DISK_DRIVER = textwrap.dedent(r"""
    import json, os, signal, subprocess, sys, time
    import trainer_fixtures as fx
    base, data_dir, case = sys.argv[1], sys.argv[2], sys.argv[3]

    def mount(name, options):
      path = os.path.join(base, name)
      os.makedirs(path, exist_ok=True)
      subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
      return path

    def run(model_dir, *flags, env=None):
      proc = subprocess.run(fx.task_command(data_dir, model_dir, *flags), env=env or fx.task_env(),
                            cwd=fx.REPO, capture_output=True, text=True, timeout=300)
      return {"code": proc.returncode, "out": proc.stdout, "err": proc.stderr}

    out = {}
    if case == "before_training":
      out["read_only"] = run(os.path.join(mount("ro", "ro,size=1m"), "run"))
      small = os.path.join(mount("small", "size=4m"), "run")
      out["small"] = run(small)
      out["small_left"] = sorted(os.listdir(small)) if os.path.isdir(small) else None
    else:  # the disk fills up during training
      model_dir = os.path.join(mount("full", "size=64m"), "run")
      flags = ("--config.train.epochs=1", "--config.export=false",
               "--config.train.checkpoint_every_steps=4")
      # The trainer stops itself after step 6 (ckpt-4 is saved); the disk is filled meanwhile.
      env = fx.task_env(BERTFT_CRASH_AT="train_step:6", BERTFT_CRASH_SIGNAL="STOP")
      proc = subprocess.Popen(fx.task_command(data_dir, model_dir, *flags), env=env, cwd=fx.REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      lines = []
      for line in proc.stdout:
        lines.append(line)
        if line.startswith("fault injection:"):
          break
      while open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] != "T":
        time.sleep(0.05)
      with open(os.path.join(model_dir, "..", "filler"), "wb") as f:
        try:
          while True:
            f.write(b"\0" * 4096)
            f.flush()
        except OSError:
          pass
      os.kill(proc.pid, signal.SIGCONT)
      rest, err = proc.communicate(timeout=300)
      out["full"] = {"code": proc.returncode, "out": "".join(lines) + rest, "err": err}
      out["full_state"] = open(os.path.join(model_dir, "checkpoints", "checkpoint")).read()
      os.remove(os.path.join(model_dir, "..", "filler"))
      out["rerun"] = run(model_dir, *flags)
      out["rerun_results"] = json.load(open(os.path.join(model_dir, "eval_results.json")))
    print("RESULT " + json.dumps(out))
""")


def run_disk_driver(data_dir, tmp_path, case):
  if shutil.which("unshare") is None or subprocess.run(
      ["unshare", "-m", "true"], capture_output=True).returncode != 0:
    pytest.skip("needs `unshare -m` (root) to mount small and read-only tmpfs disks")
  proc = subprocess.run(["unshare", "-m", sys.executable, "-c", DISK_DRIVER, str(tmp_path),
                         data_dir, case], env=fx.task_env(), cwd=fx.REPO, capture_output=True,
                        text=True, timeout=600)
  if "mount: " in proc.stderr and "RESULT " not in proc.stdout:
    pytest.skip(f"cannot mount tmpfs here: {proc.stderr.strip()[-300:]}")
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(lines[0][len("RESULT "):])


def test_unwritable_or_too_small_model_dir_is_one_error_before_training(data_dir, tmp_path):
  got = run_disk_driver(data_dir, tmp_path, "before_training")
  ro, small = got["read_only"], got["small"]
  assert ro["code"] == 1, ro
  assert re.fullmatch(rf"error: model_dir {tmp_path}/ro/run is not writable: .*Read-only file "
                      r"system", last_line(ro["err"])), ro["err"]
  assert small["code"] == 1, small
  assert re.fullmatch(
      rf"error: not enough disk space in {tmp_path}/small/run: 3 checkpoints \(\+1 while "
      r"saving\), the best weights and the export need about \d+\.\d MB more, 4\.\d MB are free",
      last_line(small["err"])), small["err"]
  for run in (ro, small):
    assert "Traceback" not in run["err"] and not logged_steps(run["out"])
  assert got["small_left"] == ["config.json"]       # no checkpoint was started


def test_disk_full_during_training_is_one_error_and_the_rerun_resumes(data_dir, tmp_path):
  got = run_disk_driver(data_dir, tmp_path, "during_training")
  full, rerun = got["full"], got["rerun"]
  assert full["code"] == 1, full
  assert logged_steps(full["out"]) == [4, 8]
  assert re.fullmatch(rf"error: could not save the checkpoint of step 8 in {tmp_path}/full/run/"
                      r"checkpoints: .*No space left on device", last_line(full["err"])), full
  assert "Traceback" not in full["err"]
  assert got["full_state"].startswith('model_checkpoint_path: "ckpt-4"\n')
  assert rerun["code"] == 0, rerun
  assert (f"resuming from {tmp_path}/full/run/checkpoints/ckpt-4: step 4 "
          "(epoch 1, 4 of its 8 steps done)") in rerun["out"]
  assert got["rerun_results"]["final"]["step"] == STEPS_PER_EPOCH
