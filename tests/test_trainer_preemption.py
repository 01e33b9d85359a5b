"""The preemption agreement (trainer/preemption.py) and the collective timeout (trainer/peers.py).

Fast (the two-replica case runs in a process of its own: logical CPUs are set before TensorFlow
starts); the two-worker behaviour on loopback is in tests/test_multiworker.py.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import pytest
import tensorflow as tf

from trainer import config as config_lib
from trainer import peers, preemption, strategy as strategy_lib

ENV = dict(os.environ, WANDB_MODE="disabled", CUDA_VISIBLE_DEVICES="",
           PYTHONPATH=os.pathsep.join([fx.REPO, os.path.join(fx.REPO, "tests")]))

# Two logical CPUs must be configured before TensorFlow starts: a process of its own.
TWO_REPLICAS = textwrap.dedent("""
    import time
    import trainer_fixtures as fx
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tensorflow.python.ops import collective_ops
    from trainer import peers, preemption, strategy as strategy_lib

    strategy = strategy_lib.build_strategy("mirrored")
    flag = preemption.PreemptionFlag(strategy)
    print("REPLICAS", strategy.num_replicas_in_sync)
    print("BEFORE", flag.anywhere())
    flag.requested = True
    print("AFTER", flag.anywhere())

    # A collective of 2 that only one member joins waits forever, as for a silent peer.
    timeout = peers.CollectiveTimeout(2, "worker_0")
    start = time.monotonic()
    try:
      with timeout.bound("a test call"), tf.device("/cpu:0"):
        collective_ops.all_reduce_v2(tf.constant(1.0), group_size=2, group_key=7,
                                     instance_key=7)
      print("NOT ABORTED")
    except tf.errors.DeadlineExceededError as e:
      print(f"ABORTED after {time.monotonic() - start:.1f} s: {peers.lost_peer_line(e)}")
""")


def test_the_flag_is_combined_over_replicas_and_a_silent_peer_is_cut_off():
  proc = subprocess.run([sys.executable, "-c", TWO_REPLICAS], env=ENV, capture_output=True,
                        text=True, timeout=120)
  out = proc.stdout
  assert proc.returncode == 0, out[-2000:] + proc.stderr[-3000:]
  assert "REPLICAS 2\nBEFORE False\nAFTER True\n" in out
  line = out.split("ABORTED after ", 1)[1]
  seconds = float(line.split(" s: ")[0])
  assert 2 <= seconds < 10, line
  assert line.split(" s: ", 1)[1].strip() == (
      "error: a peer worker failed or stopped answering (Collective ops is aborted by: worker_0 "
      "waited more than 2 s for the other workers in a test call "
      "(config.collective_timeout_seconds)); restart all workers with the same model_dir to "
      "resume from the last checkpoint")


def test_sigterm_sets_the_flag_and_one_replica_needs_no_collective():
  with preemption.PreemptionFlag(strategy_lib.build_strategy("one_device")) as flag:
    assert not flag.anywhere()
    os.kill(os.getpid(), signal.SIGTERM)   # handled: the test process goes on
    assert flag.requested and flag.anywhere()
  assert signal.getsignal(signal.SIGTERM) is not flag._handle


def test_a_disabled_timeout_starts_no_thread_and_bounds_nothing():
  before = threading.active_count()
  for timeout in (peers.CollectiveTimeout(0, "worker_0"),
                  peers.CollectiveTimeout(600, "chief", enabled=False)):  # one process
    with timeout.bound("a call"):
      pass
    assert timeout.wrap(lambda x: x + 1, "a call")(1) == 2
  assert threading.active_count() == before


def test_the_lost_peer_line_names_the_task_tensorflow_lost(monkeypatch):
  # TensorFlow 2.20's text when worker_1 was SIGKILLed (tests/test_multiworker.py).
  error = tf.errors.UnavailableError(None, None, (
      "Collective ops is aborted by: Error reported from /job:worker/task:1: The following "
      "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe "
      "tasks have crashed. Check the task logs for an earlier error, or scheduler events (e.g. "
      "preemption, eviction) to debug further.\n\t [[{{node CollectiveReduceV2}}]]"))
  monkeypatch.setenv("TF_CONFIG", json.dumps({
      "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
      "task": {"type": "worker", "index": 0}}))
  assert peers.lost_peer_line(error) == (
      "error: lost peer worker_1 (Collective ops is aborted by: Error reported from "
      "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):); "
      "restart all workers with the same model_dir to resume from the last checkpoint")
  # The survivor's own task is never the lost one.
  monkeypatch.setenv("TF_CONFIG", json.dumps({
      "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
      "task": {"type": "worker", "index": 1}}))
  assert peers.lost_peer_line(error).startswith("error: a peer worker failed or stopped ")


def test_a_negative_collective_timeout_is_refused_in_one_line():
  config = config_lib.default_config()
  assert config.collective_timeout_seconds == 600
  config.collective_timeout_seconds = -1.0
  with pytest.raises(ValueError, match=r"^config.collective_timeout_seconds must be >= 0 "
                                       r"\(0 = no bound\), got -1.0$"):
    config_lib.validate(config)
