"""Reliability of training under injected faults, on real `python -m trainer.task` processes.

Kills are deterministic and injected from the test side: tests/fault_launcher.py patches the
trainer's own functions (the train and eval steps, CheckpointManager.save, the export's
move_into_place) so that the process sends itself SIGKILL (or SIGTERM) on its n-th arrival at
a point. Each test starts from an empty model_dir, kills one run at one point, checks what it
left (checkpoints, eval_results.json, export/, the exit code), then re-runs the same training
to the end and checks it equals, bit for bit, an uninterrupted run: no batch was repeated or
skipped (one step moves weights by ~0.04). Each killed process imports TensorFlow: ~10 s of CPU.

Data and disk faults run the trainer in-process (in a mount namespace for the disks): they go
through the same checks, and the entry point's one-line `error:` is tested in test_trainer.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
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
FAULT_LAUNCHER = os.path.join(fx.REPO, "tests", "fault_launcher.py")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(d, n_train=128, n_val=64, n_test=32)
  fx.write_vocab(d)
  return d


pytestmark = pytest.mark.usefixtures("float32_policy")   # conftest.py


def run_task(data_dir, model_dir, *flags, crash_at=None, signal_name="KILL"):
  """Runs the trainer (through the fault launcher when crash_at is given); returns
  (returncode, output, seconds from the injected fault to the exit)."""
  command = fx.task_command(data_dir, model_dir, *flags)
  if crash_at:
    command = [sys.executable, FAULT_LAUNCHER, f"--crash_at={crash_at}",
               f"--signal={signal_name}", "--"] + command[3:]
  proc = subprocess.Popen(command, env=fx.task_env(), cwd=fx.REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  lines, fault_time = [], None
  watchdog = threading.Timer(TIMEOUT, proc.kill)    # a hung process fails the test, not CI
  watchdog.start()
  try:
    for line in proc.stdout:
      lines.append(line)
      if line.startswith("fault injection:"):
        fault_time = time.monotonic()
    proc.wait(timeout=60)
  finally:
    watchdog.cancel()
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
# The processes that this module only waits for (each killed run, and the disk driver below)
# all start, two at a time, as the module's first test starts, and run while this process
# trains the reference and finishes the runs killed before. A fault is injected at a counted
# arrival, not at a time, so what a run leaves does not depend on how busy the machine is.
KILLS = {  # name: (--crash_at, signal)
    "mid_step": ("train_step:6", "KILL"),
    "mid_checkpoint_write": ("checkpoint_write:2", "KILL"),
    "during_evaluation": ("evaluation", "KILL"),
    "mid_best_checkpoint_write": ("best_checkpoint_write", "KILL"),
    "sigterm_during_evaluation": ("evaluation:2", "TERM"),
    "during_export": ("export", "KILL"),
}


@pytest.fixture(scope="module")
def background_runs(data_dir, tmp_path_factory):
  """{name: a future}: KILLS' runs, each (model_dir, returncode, output, seconds from the fault
  to the exit), and "disks", (base dir, the disk driver's finished process or None)."""
  def kill(name):
    model_dir = str(tmp_path_factory.mktemp(name) / "run")
    crash_at, signal_name = KILLS[name]
    return (model_dir, *run_task(data_dir, model_dir, *FLAGS, crash_at=crash_at,
                                 signal_name=signal_name))

  def disks():
    base = str(tmp_path_factory.mktemp("disks"))
    return base, run_disk_driver(base, data_dir)
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    runs = {name: pool.submit(kill, name) for name in KILLS}
    runs["disks"] = pool.submit(disks)
    yield runs


def killed_run(background_runs, name):
  """Waits for the killed run `name`: (model_dir, checkpoints/, best/, returncode, output,
  seconds from the fault to the exit)."""
  model_dir, code, out, after_fault = background_runs[name].result()
  return (model_dir, os.path.join(model_dir, "checkpoints"), os.path.join(model_dir, "best"),
          code, out, after_fault)


def tiny_overrides(**more):
  """The config of FLAGS, for in-process runs."""
  return {"train.checkpoint_every_steps": 4, "train.log_every_steps": 2, **more}


@pytest.fixture(scope="module")
def reference(data_dir, background_runs, tmp_path_factory):
  """An uninterrupted run: (its ckpt-16 values, its results). (background_runs first: they
  run while this one trains.)"""
  model_dir = str(tmp_path_factory.mktemp("reference") / "run")
  results = train.train_and_evaluate(fx.tiny_config(data_dir, **tiny_overrides(export=False)),
                                     data_dir, model_dir, strategy_lib.build_strategy("one_device"))
  return read_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-16")), results


def finish_and_compare(data_dir, model_dir, reference, export=False):
  """Re-runs the killed run to the end (in this process); asserts it equals the reference."""
  results = train.train_and_evaluate(fx.tiny_config(data_dir, **tiny_overrides(export=export)),
                                     data_dir, model_dir, strategy_lib.build_strategy("one_device"))
  want_values, want = reference
  got_values = read_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-16"))
  assert got_values.keys() == want_values.keys()
  for name in want_values:   # weights, Adam's slots and iterations, step, epoch
    if name != "save_counter/.ATTRIBUTES/VARIABLE_VALUE":   # counts saves, not steps
      np.testing.assert_array_equal(got_values[name], want_values[name], err_msg=name)
  for key in ("validation", "test", "best_step", "threshold", "source"):
    assert results["final"][key] == want["final"][key], key
  assert [e["validation"] for e in results["epochs"]] == [
      e["validation"] for e in want["epochs"]]
  return results


def test_kill_mid_step_keeps_the_last_checkpoint(data_dir, background_runs, reference):
  model_dir, ckpt_dir, _, code, out, _ = killed_run(background_runs, "mid_step")
  assert code == -signal.SIGKILL, out[-3000:]
  latest, recorded = checkpoint_state(ckpt_dir)
  assert (latest, recorded) == (f"{ckpt_dir}/ckpt-4", [f"{ckpt_dir}/ckpt-4"])
  assert_valid_checkpoint(latest, 4)
  assert results(model_dir) is None
  finish_and_compare(data_dir, model_dir, reference)


def test_kill_mid_checkpoint_write_never_makes_it_latest(data_dir, background_runs, reference):
  model_dir, ckpt_dir, _, code, out, _ = killed_run(background_runs, "mid_checkpoint_write")
  assert code == -signal.SIGKILL, out[-3000:]
  # ckpt-8's files were complete on disk, but the state file never named it.
  assert os.path.exists(os.path.join(ckpt_dir, "ckpt-8.index"))
  latest, recorded = checkpoint_state(ckpt_dir)
  assert (latest, recorded) == (f"{ckpt_dir}/ckpt-4", [f"{ckpt_dir}/ckpt-4"])
  assert_valid_checkpoint(latest, 4)
  finish_and_compare(data_dir, model_dir, reference)


def test_kill_during_evaluation_keeps_the_epoch_unevaluated(data_dir, background_runs, reference):
  model_dir, ckpt_dir, _, code, out, _ = killed_run(background_runs, "during_evaluation")
  assert code == -signal.SIGKILL, out[-3000:]
  latest, _ = checkpoint_state(ckpt_dir)
  assert latest == f"{ckpt_dir}/ckpt-8"
  assert_valid_checkpoint(latest, 8)
  assert results(model_dir) is None            # epoch 1 was never recorded
  finished = finish_and_compare(data_dir, model_dir, reference)
  assert [e["epoch"] for e in finished["epochs"]] == [1, 2]


def test_kill_mid_best_checkpoint_write_leaves_no_best(data_dir, background_runs, reference):
  model_dir, _, best_dir, code, out, _ = killed_run(background_runs, "mid_best_checkpoint_write")
  assert code == -signal.SIGKILL, out[-3000:]
  assert os.path.exists(os.path.join(best_dir, "ckpt-8.index"))
  assert checkpoint_state(best_dir) == (None, [])
  assert results(model_dir) is None
  finish_and_compare(data_dir, model_dir, reference)


def test_sigterm_during_evaluation_checkpoints_and_exits_143_within_30s(data_dir, background_runs,
                                                                        reference):
  # Each evaluation (2 batches) is one eval_step call: the 2nd call is epoch 2's, after step
  # 16; the preemption check after its last call stops before its results are recorded.
  model_dir, ckpt_dir, best_dir, code, out, after_fault = killed_run(
      background_runs, "sigterm_during_evaluation")
  assert code == 143, out[-3000:]
  assert after_fault < 30, after_fault
  assert [(e["epoch"], e["step"], e["best"]) for e in results(model_dir)["epochs"]] == [
      (1, 8, True)]
  latest, _ = checkpoint_state(ckpt_dir)
  assert latest == f"{ckpt_dir}/ckpt-16"
  assert_valid_checkpoint(latest, 16)
  assert checkpoint_state(best_dir)[0] == f"{best_dir}/ckpt-8"
  finish_and_compare(data_dir, model_dir, reference)


def test_kill_during_export_leaves_no_half_export(data_dir, background_runs, reference):
  model_dir, _, _, code, out, _ = killed_run(background_runs, "during_export")
  assert code == -signal.SIGKILL, out[-3000:]
  assert not os.path.exists(os.path.join(model_dir, "export"))
  staged = [n for n in os.listdir(model_dir) if n.startswith("export.tmp-")]
  assert len(staged) == 1      # complete, but never moved into place
  written = results(model_dir)
  assert [e["epoch"] for e in written["epochs"]] == [1, 2] and "final" not in written
  finished = finish_and_compare(data_dir, model_dir, reference, export=True)
  assert finished["final"]["step"] == finished["final"]["total_steps"] == TOTAL
  names = os.listdir(model_dir)
  assert "export" in names and not [n for n in names if n.startswith("export.")]
  metadata = json.load(open(os.path.join(model_dir, "export", "assets", "metadata.json")))
  assert metadata["training"]["step"] == TOTAL
  assert metadata["input"] == {"unescape_html": False}  # The manifest's, for predict/scoring.



# ------------------------------------------------------------------ layer-wise learning-rate decay
def _train_to_the_end(data_dir, model_dir, **overrides):
  """Trains in this process (resuming what model_dir holds); returns its ckpt-16 values."""
  train_in_process(data_dir, model_dir, **tiny_overrides(export=False, **overrides))
  return read_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-16"))


def _assert_same_values(got, want):
  assert got.keys() == want.keys()
  for name in want:   # weights, Adam's slots and iterations, step, epoch
    if name != "save_counter/.ATTRIBUTES/VARIABLE_VALUE":   # counts saves, not steps
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_layer_decay_1_reproduces_the_default_training_bit_for_bit(data_dir, tmp_path,
                                                                    reference, capsys):
  got = _train_to_the_end(data_dir, str(tmp_path / "run"), **{"train.layer_decay": 1.0})
  _assert_same_values(got, reference[0])       # the reference run leaves the option unset
  assert not [l for l in capsys.readouterr().out.splitlines() if l.startswith("layer_decay")]


def test_a_resumed_layer_decay_run_ends_as_an_uninterrupted_one(data_dir, tmp_path, reference,
                                                                 capsys):
  decay = {"train.layer_decay": 0.8}
  want = _train_to_the_end(data_dir, str(tmp_path / "straight"), **decay)
  out = capsys.readouterr().out
  assert ("layer_decay 0.8 over 2 layers: embeddings x0.64, layer_0 x0.8, layer_1 x1, "
          "head x1") in out.splitlines()
  model_dir = str(tmp_path / "resumed")
  stopped = train_in_process(data_dir, model_dir, **tiny_overrides(
      export=False, **decay, **{"train.stop_at_step": 6}))
  assert stopped["stopped_at_step"] == 6
  _assert_same_values(_train_to_the_end(data_dir, model_dir, **decay), want)
  assert "resuming from" in capsys.readouterr().out
  embeddings = "model/layer_with_weights-0/_embedding_layer/embeddings/.ATTRIBUTES/VARIABLE_VALUE"
  assert embeddings in want       # and layer decay changed it: the comparison can fail
  assert not np.array_equal(want[embeddings], reference[0][embeddings])


# ---------------------------------------------------------------- corrupt data, bad manifests
# In this process: these fail (or are skipped) in train_and_evaluate's own checks; the entry
# point turns its DataError into one `error:` line (test_trainer.test_task_prints_one_line_errors).
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


def train_in_process(data_dir, model_dir, **overrides):
  return train.train_and_evaluate(fx.tiny_config(data_dir, **overrides), data_dir, model_dir,
                                  strategy_lib.build_strategy("one_device"))


def test_a_corrupt_shard_is_named_before_training(corrupt_data_dir, tmp_path):
  d, truncated, _ = corrupt_data_dir
  with pytest.raises(schema.DataError) as error:
    train_in_process(d, str(tmp_path / "run"))
  assert re.fullmatch(
      rf"shard {re.escape(truncated)} is corrupt \(truncated record at \d+[^()]*\); re-run "
      r"preprocessing, or set --config.data.on_corrupt_shard=skip to train without it",
      str(error.value)), str(error.value)
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_corrupt_shard_read_during_training_is_named(corrupt_data_dir, tmp_path, capsys):
  d, truncated, _ = corrupt_data_dir
  with pytest.raises(schema.DataError) as error:
    train_in_process(d, str(tmp_path / "run"), **{"data.verify_shards": False})
  assert re.fullmatch(rf"shard {re.escape(truncated)} is corrupt \(truncated record at \d+"
                      r"[^()]*\); re-run preprocessing, or set --config.data.on_corrupt_shard=skip",
                      str(error.value)), str(error.value)
  assert "input pipeline 0/1" in capsys.readouterr().out      # it failed while training
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_corrupt_shards_can_be_skipped_and_are_counted(corrupt_data_dir, tmp_path, capsys):
  d, truncated, flipped = corrupt_data_dir
  got = train_in_process(d, str(tmp_path / "run"), **{
      "data.on_corrupt_shard": "skip", "train.epochs": 1, "export": False})
  out = capsys.readouterr().out
  assert f"warning: skipped 2 bad shard(s): ['{truncated}', '{flipped}']" in out
  assert "data: 64 train / 32 validation / 32 test rows" in out   # the good shards' rows
  final = got["final"]
  assert [s["file"] for s in final["skipped_shards"]] == [truncated, flipped]
  assert re.fullmatch(r"is corrupt \(truncated record at \d+[^()]*\)",
                      final["skipped_shards"][0]["problem"])
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
    train_in_process(d, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


# ------------------------------------------------------------------- unwritable and full disks
# Root ignores file modes, so read-only and full disks are real tmpfs mounts, made inside a
# private mount namespace (`unshare -m`) by this driver process, which trains in-process and
# prints one JSON line of results. The disk fills up at a deterministic point: the driver
# patches the train step (tests/fault_launcher.py) to fill the disk after the 6th step.
DISK_DRIVER = textwrap.dedent(r"""
    import json, os, subprocess, sys
    import trainer_fixtures as fx
    import fault_launcher
    from trainer import strategy, train
    base, data_dir = sys.argv[1], sys.argv[2]

    def mount(name, options):
      path = os.path.join(base, name)
      os.makedirs(path, exist_ok=True)
      subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
      return path

    def run(name, model_dir, **overrides):
      print(f"=== {name}", flush=True)
      try:
        train.train_and_evaluate(fx.tiny_config(data_dir, **overrides), data_dir, model_dir,
                                 strategy.build_strategy("one_device"))
        return None
      except (ValueError, train.TrainingError) as e:
        return f"{type(e).__name__}: {e}"

    out = {}
    out["read_only"] = run("read_only", os.path.join(mount("ro", "ro,size=1m"), "run"))
    small = os.path.join(mount("small", "size=4m"), "run")
    out["small"] = run("small", small)
    out["small_left"] = sorted(os.listdir(small))

    disk = mount("full", "size=64m")
    filler = os.path.join(disk, "filler")

    def fill_the_disk():
      fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
      try:
        while True:
          os.write(fd, bytes(4096))
      except OSError:
        pass
      finally:
        os.close(fd)
    fault_launcher.install("train_step", 6, fill_the_disk)
    overrides = {"train.epochs": 1, "export": False, "train.checkpoint_every_steps": 4}
    model_dir = os.path.join(disk, "run")
    out["full"] = run("full", model_dir, **overrides)
    out["full_state"] = open(os.path.join(model_dir, "checkpoints", "checkpoint")).read()
    os.remove(filler)
    out["rerun"] = run("rerun", model_dir, **overrides)
    out["rerun_results"] = json.load(open(os.path.join(model_dir, "eval_results.json")))
    print("RESULT " + json.dumps(out))
""")


def run_disk_driver(base, data_dir):
  """The disk driver's finished process, or None where this machine refuses `unshare -m`."""
  if shutil.which("unshare") is None or subprocess.run(
      ["unshare", "-m", "true"], capture_output=True).returncode != 0:
    return None
  return subprocess.run(["unshare", "-m", sys.executable, "-c", DISK_DRIVER, base, data_dir],
                        env=fx.task_env(), cwd=fx.REPO, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def disk_faults(background_runs):
  base, proc = background_runs["disks"].result()
  if proc is None:
    pytest.skip("needs `unshare -m` (root) to mount small and read-only tmpfs disks")
  if "mount: " in proc.stderr and "RESULT " not in proc.stdout:
    pytest.skip(f"cannot mount tmpfs here: {proc.stderr.strip()[-300:]}")
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
  sections = dict(re.findall(r"^=== (\w+)\n(.*?)(?=^=== |^RESULT )", proc.stdout, re.M | re.S))
  return base, json.loads(lines[0][len("RESULT "):]), sections


def test_unwritable_or_too_small_model_dir_is_one_error_before_training(disk_faults):
  base, got, out = disk_faults
  assert re.fullmatch(rf"ValueError: model_dir {base}/ro/run is not writable: .*Read-only file "
                      r"system", got["read_only"]), got["read_only"]
  assert re.fullmatch(
      rf"ValueError: not enough disk space in {base}/small/run: 3 checkpoints \(\+1 while "
      r"saving\), the best weights and the export need about \d+\.\d MB more, 4\.\d MB are "
      r"free", got["small"]), got["small"]
  assert got["small_left"] == ["config.json"]       # no checkpoint was started
  assert logged_steps(out["read_only"] + out["small"]) == []
  assert "model:" in out["small"]                     # refused once the size is known


def test_disk_full_during_training_is_one_error_and_the_rerun_resumes(disk_faults):
  base, got, out = disk_faults
  assert re.fullmatch(rf"TrainingError: could not save the checkpoint of step 8 in {base}/full/"
                      r"run/checkpoints: [^\n]*No space left on device", got["full"]), got["full"]
  assert got["full_state"].startswith('model_checkpoint_path: "ckpt-4"\n')
  assert logged_steps(out["full"]) == [4, 8]
  assert (f"resuming from {base}/full/run/checkpoints/ckpt-4: step 4 "
          "(epoch 1, 4 of its 8 steps done)") in out["rerun"]
  assert logged_steps(out["rerun"]) == [8]
  assert got["rerun_results"]["final"]["step"] == STEPS_PER_EPOCH
