"""MultiWorkerMirroredStrategy for real: two `python -m trainer.task` processes on 127.0.0.1.

Each worker is its own process with its own TF_CONFIG, HOME, TMPDIR, working directory and
WANDB_MODE=offline, as on a cluster; they talk gRPC over loopback only. Checked: both finish,
end with identical weights and read disjoint train shards; only the chief writes checkpoints,
the export and W&B runs; a worker killed mid-run (SIGKILL, in training or evaluation) makes the
other exit non-zero with one `error:` line within 60 s instead of hanging, and re-running both
resumes from the last checkpoint; SIGTERM to one worker during evaluation makes both save the
same step and exit 143, and the resumed job ends with the uninterrupted job's metrics.

Workers run through tests/fault_launcher.py, which patches the trainer in the worker process:
`--crash_at=train_step:<n>` makes a worker SIGKILL itself after its n-th training step, so the
last checkpoint is known exactly (`evaluation:<n>`: after its n-th evaluation call; `--signal=TERM`
sends SIGTERM instead); `--dump_state_dir` writes each worker's end-of-training state,
since a non-chief deletes its own checkpoints.

Slow (each launch of the two-process cluster costs 30-100 s on 2 shared cores: two TensorFlow
imports, tracing, W&B; the two tests took 80 s and 200 s at a load average of 7), hence the
`slow` marker. Offline, as CI runs it:
  unshare -n bash -c 'ip link set lo up && .venv/bin/python -m pytest -m slow \
      tests/test_multiworker.py'
"""
import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

NUM_WORKERS = 2
LAUNCH_TIMEOUT = 300     # seconds for one launch of the cluster to finish, whatever happens
PEER_FAILURE_LIMIT = 60  # seconds a survivor may take to exit after its peer died
SHARD_LINE = re.compile(r"input pipeline (\d+)/(\d+) \((\w+)\) reads train shards (\[.*\])")
RESUME_LINE = re.compile(r"resuming from (\S+): step (\d+)")
STEP_LINE = re.compile(r"^step (\d+)/(\d+) ", re.MULTILINE)
# What TensorFlow reports when a collective is cut off by a dead peer: heartbeats stopped
# (seen by the coordination service leader) or a reset connection (seen by the others).
PEER_FAILURE = ("Collective ops is aborted by", "Connection reset by peer")
FAULT_LAUNCHER = os.path.join(fx.REPO, "tests", "fault_launcher.py")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """256 train rows in 4 shards (2 per worker): 16 steps of 16 examples per epoch."""
  d = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(d, n_train=256, n_val=64, n_test=32, num_shards=4)
  fx.write_vocab(d)
  return d


def free_ports(n):
  """n distinct TCP ports free on 127.0.0.1 right now (all bound at once, then released)."""
  socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
  try:
    for s in socks:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


class Worker:
  """One trainer process of the cluster, with its own directories and log file."""

  def __init__(self, index, root):
    self.index = index
    self.task = f"worker_{index}"
    self.dir = os.path.join(root, self.task)
    self.home, self.tmp, self.cwd = (os.path.join(self.dir, d) for d in ("home", "tmp", "cwd"))
    for d in (self.home, self.tmp, self.cwd):
      os.makedirs(d, exist_ok=True)
    self.log_path = os.path.join(self.dir, "log.txt")
    self.proc = None
    self.exit_time = None
    self.fault_time = None   # when its log first showed the fault launcher's line

  def start(self, args, tf_config, launcher_args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WANDB_", "BERTFT_", "TF_CONFIG"))}
    env.update(TF_CONFIG=json.dumps(tf_config), WANDB_MODE="offline", CUDA_VISIBLE_DEVICES="",
               HOME=self.home, TMPDIR=self.tmp, PYTHONPATH=fx.REPO)
    with open(self.log_path, "w") as log:
      # A session of its own: the process and its children (W&B's service) form one process
      # group that `stop` can kill whatever state the run is in.
      self.proc = subprocess.Popen(
          [sys.executable, FAULT_LAUNCHER, *launcher_args, "--",
           "--strategy=multi_worker_mirrored"] + args,
          cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

  def poll(self):
    rc = self.proc.poll()
    if rc is not None and self.exit_time is None:
      self.exit_time = time.monotonic()
    if self.fault_time is None and "fault injection:" in self.log():
      self.fault_time = time.monotonic()
    return rc

  def stop(self):
    """Kills this worker's process group (only processes this test started)."""
    if self.proc is None:
      return
    try:
      os.killpg(self.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass  # the group is gone already
    try:
      self.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      pass

  def log(self):
    with open(self.log_path, errors="replace") as f:
      return f.read()


class Cluster:
  """Launches the workers on loopback, waits for them with a bound, kills them afterwards."""

  def __init__(self, root, data_dir, model_dirs, flags=(), faults=None):
    """model_dirs: one per worker (the same path twice = a shared model_dir, as on GCS);
    faults: {worker index: [tests/fault_launcher.py flags]}."""
    self.workers = [Worker(i, root) for i in range(NUM_WORKERS)]
    ports = free_ports(NUM_WORKERS)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    self.started = time.monotonic()
    for w, model_dir in zip(self.workers, model_dirs):
      args = [f"--config={fx.TINY_CONFIG}", f"--data_dir={data_dir}",
              f"--model_dir={model_dir}",
              f"--config.encoder.vocab_file={os.path.join(data_dir, 'vocab.txt')}"] + list(flags)
      w.start(args, {"cluster": cluster, "task": {"type": "worker", "index": w.index}},
              (faults or {}).get(w.index, []))

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for w in self.workers:
      w.stop()

  def wait(self):
    """Waits until every worker has exited (or LAUNCH_TIMEOUT); returns their exit codes."""
    deadline = self.started + LAUNCH_TIMEOUT
    # Poll every worker each round (no short-circuit): exit times are taken here, 0.2 s apart.
    while None in [w.poll() for w in self.workers]:
      if time.monotonic() > deadline:
        pytest.fail(f"workers still running after {LAUNCH_TIMEOUT} s:\n{self.logs()}")
      time.sleep(0.2)
    return [w.proc.returncode for w in self.workers]

  def logs(self, tail=4000):
    return "\n".join(f"----- {w.task} (exit {w.proc.poll()}):\n{w.log()[-tail:]}"
                     for w in self.workers)


def shard_assignment(log):
  """{pipeline id: (num pipelines, task name, [train shard files])} from a worker's log."""
  return {int(i): (int(n), task, ast.literal_eval(files))
          for i, n, task, files in SHARD_LINE.findall(log)}


def checkpoint_values(path):
  """{key: array} of a TF checkpoint, without the object graph and the save counter."""
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k != "_CHECKPOINTABLE_OBJECT_GRAPH" and not k.startswith("save_counter")}


def latest_step(model_dir):
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  return int(latest.rsplit("-", 1)[1]) if latest else None


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
  """One uninterrupted job of the default flags: (model_dirs, states dir, workers)."""
  root = tmp_path_factory.mktemp("uninterrupted")
  # Separate model_dirs, so anything the non-chief wrote would show up in its own.
  model_dirs = [str(root / "chief_model_dir"), str(root / "worker_model_dir")]
  states = str(root / "states")
  with Cluster(str(root), data_dir, model_dirs,
               faults={i: [f"--dump_state_dir={states}"] for i in range(NUM_WORKERS)}) as c:
    codes = c.wait()
    assert codes == [0, 0], c.logs()
  return model_dirs, states, c.workers


def test_two_workers_train_in_step_and_only_the_chief_writes(uninterrupted):
  model_dirs, states, workers = uninterrupted
  chief_log, worker_log = (w.log() for w in workers)
  worker = workers[1]

  # Both processes ran one synchronous job of 2 replicas: 16 steps x 2 epochs.
  for log in (chief_log, worker_log):
    assert "= 32 steps of 16 examples (2 replica(s) x 8)" in log
  assert "step 32/32 " in chief_log

  # Each worker read its own half of the train shards: disjoint, and together all of them.
  assignment = {**shard_assignment(chief_log), **shard_assignment(worker_log)}
  assert sorted(assignment) == [0, 1]
  assert shard_assignment(chief_log)[0][:2] == (2, "worker_0")
  assert shard_assignment(worker_log)[1][:2] == (2, "worker_1")
  files = [set(assignment[i][2]) for i in (0, 1)]
  assert files[0] and files[1] and not files[0] & files[1]
  assert files[0] | files[1] == {f"train-{s:05d}-of-00004.tfrecord" for s in range(4)}

  # Identical final state: the non-chief's own copy (dumped by the launcher) equals, bit for
  # bit, the chief's last checkpoint in model_dir, weights and Adam slots alike.
  chief_dir = model_dirs[0]
  last = checkpoint_values(os.path.join(chief_dir, "checkpoints", "ckpt-32"))
  dumped = {task: checkpoint_values(os.path.join(states, task, "state-1"))
            for task in ("worker_0", "worker_1")}
  model_keys = [k for k in last if k.startswith("model/")]
  assert len(model_keys) > 20 and any("/m/" in k for k in last)  # weights and Adam slots
  assert int(last["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 32
  for task, values in dumped.items():
    assert sorted(values) == sorted(last), task
    for k in last:
      np.testing.assert_array_equal(values[k], last[k], err_msg=f"{task}: {k}")
  # ...and training moved the weights, so the equality is not that of two untouched inits.
  earlier = checkpoint_values(os.path.join(chief_dir, "checkpoints", "ckpt-16"))
  assert sum(not np.array_equal(earlier[k], last[k]) for k in model_keys) > 20

  # Only the chief wrote checkpoints, best weights, the export, results and W&B runs.
  for name in ("config.json", "eval_results.json", "export/saved_model.pb",
               "checkpoints/checkpoint", "best/checkpoint"):
    assert os.path.exists(os.path.join(chief_dir, name)), name
  results = json.load(open(os.path.join(chief_dir, "eval_results.json")))
  assert results["final"]["step"] == results["final"]["total_steps"] == 32
  wandb_runs = [r for r in os.listdir(os.path.join(chief_dir, "wandb"))
                if r.startswith("offline-run-")]
  assert len(wandb_runs) == 3, wandb_runs  # train, evaluate, save
  assert os.listdir(model_dirs[1]) == []
  # The non-chief's temporary save directory (TF's convention) is gone, and it never
  # started W&B: no run directory anywhere it could write, no W&B line in its log.
  assert [d for d in os.listdir(worker.tmp) if d.startswith("bert-trainer-")] == []
  for d in (worker.home, worker.cwd, worker.tmp):
    assert not any("wandb" in name for _, dirs, _ in os.walk(d) for name in dirs), d
  assert "wandb" not in worker_log.lower()


def _run_with_a_kill(root, data_dir, model_dir, flags, victim, crash_at):
  """Launches both workers, `victim` SIGKILLs itself at its crash_at-th training step (the
  fault launcher); checks the survivor exits non-zero within PEER_FAILURE_LIMIT s.
  Returns the cluster's workers."""
  faults = {victim: [f"--crash_at=train_step:{crash_at}"]}
  with Cluster(root, data_dir, [model_dir] * NUM_WORKERS, flags, faults) as c:
    codes = c.wait()
    dead, survivor = c.workers[victim], c.workers[1 - victim]
    assert codes[victim] == -signal.SIGKILL, c.logs()
    assert codes[1 - victim] > 0, c.logs()  # an error exit, not a hang nor a success
    took = survivor.exit_time - dead.exit_time  # to the nearest poll (0.2 s)
    print(f"{survivor.task} exited {took:.1f} s after {dead.task} was killed")
    assert took < PEER_FAILURE_LIMIT, f"survivor exited {took:.1f} s after the kill"
    assert any(m in survivor.log() for m in PEER_FAILURE), c.logs()
    errors = [line for line in survivor.log().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in survivor.log(), c.logs()
    assert errors[0].startswith(f"error: lost peer {dead.task} ("), errors[0]
    return c.workers


def test_a_killed_worker_fails_the_other_and_a_rerun_resumes(data_dir, tmp_path):
  # One shared model_dir (as gs:// on a cluster), 2 x 32 steps, checkpoints every 8.
  model_dir = str(tmp_path / "model_dir")
  flags = ["--config.train.steps_per_epoch=32", "--config.export=false",
           "--config.eval.test_split=false"]

  # 1. The chief dies after its 12th step: the other worker fails; ckpt-8 is the last.
  _run_with_a_kill(str(tmp_path / "run1"), data_dir, model_dir, flags, victim=0, crash_at=12)
  assert latest_step(model_dir) == 8

  # 2. Both re-run and resume at step 8; now the non-chief dies at its 14th step (step 22).
  workers = _run_with_a_kill(str(tmp_path / "run2"), data_dir, model_dir, flags, victim=1,
                             crash_at=14)
  for w in workers:
    assert RESUME_LINE.search(w.log()).group(2) == "8", w.log()
  assert latest_step(model_dir) == 16
  # The killed non-chief left its temporary save directory behind: it saved there, not in
  # model_dir (which the first test checks is cleaned up after a normal exit).
  assert [d for d in os.listdir(workers[1].tmp) if d.startswith("bert-trainer-worker_1-")]

  # 3. Both re-run and finish from step 16: the step count continues to the planned 64.
  states = str(tmp_path / "states")
  with Cluster(str(tmp_path / "run3"), data_dir, [model_dir] * NUM_WORKERS, flags,
               faults={i: [f"--dump_state_dir={states}"] for i in range(NUM_WORKERS)}) as c:
    codes = c.wait()
    assert codes == [0, 0], c.logs()
    logs = [w.log() for w in c.workers]
  for log in logs:
    match = RESUME_LINE.search(log)
    assert match and match.group(1).endswith("ckpt-16") and match.group(2) == "16", log
  steps = [int(s) for s, total in STEP_LINE.findall(logs[0])]
  assert steps[0] == 20 and steps[-1] == 64, steps  # logged every 4 steps, from 16 on
  results = json.load(open(os.path.join(model_dir, "eval_results.json")))
  assert results["final"]["step"] == results["final"]["total_steps"] == 64
  assert [e["epoch"] for e in results["epochs"]] == [1, 2]
  assert latest_step(model_dir) == 64
  # The resumed workers still end in step with each other and with the chief's checkpoint.
  last = checkpoint_values(os.path.join(model_dir, "checkpoints", "ckpt-64"))
  for task in ("worker_0", "worker_1"):
    values = checkpoint_values(os.path.join(states, task, "state-1"))
    assert sorted(values) == sorted(last)
    for k in last:
      np.testing.assert_array_equal(values[k], last[k], err_msg=f"{task}: {k}")


PREEMPTION_LIMIT = 30    # seconds from a worker's SIGTERM to both workers' exit


def test_sigterm_to_one_worker_during_evaluation_stops_both_and_the_rerun_ends_the_same(
    data_dir, tmp_path, uninterrupted):
  # 1. The non-chief gets SIGTERM as its epoch-1 validation call returns (steps 1-16 trained,
  #    ckpt-16 saved at the epoch end): the check after that call, summed over both workers,
  #    stops both there, before the epoch's results are recorded.
  model_dir = str(tmp_path / "model_dir")
  faults = {1: ["--crash_at=evaluation:1", "--signal=TERM"]}
  with Cluster(str(tmp_path / "run1"), data_dir, [model_dir] * NUM_WORKERS, faults=faults) as c:
    codes = c.wait()
    assert codes == [143, 143], c.logs()
    preempted = c.workers[1]
    for w in c.workers:
      assert "preempted: checkpoint saved at step 16" in w.log(), c.logs()
      took = w.exit_time - preempted.fault_time
      print(f"{w.task} exited {took:.1f} s after the SIGTERM")
      assert took < PREEMPTION_LIMIT, f"{w.task} exited {took:.1f} s after the SIGTERM"
    assert "SIGTERM received" not in c.workers[0].log()   # the chief stopped on the agreement
  assert latest_step(model_dir) == 16
  assert not os.path.exists(os.path.join(model_dir, "eval_results.json"))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "best")) is None

  # 2. Both re-run: they resume at step 16, evaluate epoch 1 and finish as the uninterrupted
  #    job did, metric for metric.
  with Cluster(str(tmp_path / "run2"), data_dir, [model_dir] * NUM_WORKERS) as c:
    codes = c.wait()
    assert codes == [0, 0], c.logs()
    for w in c.workers:
      assert RESUME_LINE.search(w.log()).group(2) == "16", w.log()
  got = json.load(open(os.path.join(model_dir, "eval_results.json")))
  want = json.load(open(os.path.join(uninterrupted[0][0], "eval_results.json")))
  for key in ("step", "best_step", "source", "threshold", "validation", "test"):
    assert got["final"][key] == want["final"][key], key
  assert [e["validation"] for e in got["epochs"]] == [e["validation"] for e in want["epochs"]]


def test_a_peer_killed_during_evaluation_ends_the_other_with_one_line(data_dir, tmp_path):
  timeout = 30
  flags = ["--config.export=false", "--config.eval.test_split=false",
           f"--config.collective_timeout_seconds={timeout}"]
  faults = {1: ["--crash_at=evaluation:1"]}   # SIGKILL as its epoch-1 validation call returns
  with Cluster(str(tmp_path), data_dir, [str(tmp_path / "model_dir")] * NUM_WORKERS, flags,
               faults) as c:
    codes = c.wait()
    survivor, dead = c.workers
    assert codes == [1, -signal.SIGKILL], c.logs()
    took = survivor.exit_time - dead.exit_time  # to the nearest poll (0.2 s)
    print(f"{survivor.task} exited {took:.1f} s after {dead.task} was killed")
    assert took < timeout + 15, f"survivor exited {took:.1f} s after the kill"
    log = survivor.log()
  errors = [line for line in log.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, log[-3000:]
  assert errors[0].startswith("error: lost peer worker_1 (")
  assert errors[0].endswith("restart all workers with the same model_dir to resume from the "
                            "last checkpoint")
  assert "Traceback" not in log
