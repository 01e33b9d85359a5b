"""Waiting for the other workers: a bound on each collective call, and the line a lost peer gives.

A worker of a multi-worker job blocks inside a collective (a training, evaluation or agreement
call) until every peer joins it. A dead peer is noticed by TensorFlow itself (a reset
connection, or the coordination service's missed heartbeats), but a peer that is alive and
never joins (stuck on a file system, deadlocked, on another code path) would hang the others
forever: CollectiveTimeout aborts this worker's collectives when one call lasts longer than
config.collective_timeout_seconds (its own computing included), so the call raises
DeadlineExceededError and the entry point prints one `error:` line.
"""
import contextlib
import os
import re
import sys
import threading
import time

import tensorflow as tf

from bertcore import cli, private_apis

PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError,
               tf.errors.DeadlineExceededError)
_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


class CollectiveTimeout:
  """Aborts this process's collectives when one bounded call lasts more than `seconds`.

  One watcher thread for the whole run; `seconds` of 0 (or a single-process strategy, whose
  collectives have no peer to lose) disables it.
  """

  def __init__(self, seconds, task, enabled=True):
    self.seconds = seconds
    self.task = task
    self._enabled = enabled and seconds > 0
    self._changed = threading.Condition()
    self._deadline = None   # time.monotonic() past which the current call is aborted
    self._what = None
    if self._enabled:
      threading.Thread(target=self._watch, name="collective-timeout", daemon=True).start()

  def wrap(self, fn, what):
    """fn, its every call bounded (what names the call in the error)."""
    def bounded(*args, **kwargs):
      with self.bound(what):
        return fn(*args, **kwargs)
    return bounded

  @contextlib.contextmanager
  def bound(self, what):
    if not self._enabled:
      yield
      return
    with self._changed:
      self._deadline, self._what = time.monotonic() + self.seconds, what
      self._changed.notify()
    try:
      yield
    finally:
      with self._changed:
        self._deadline = None
        self._changed.notify()

  def _watch(self):
    with self._changed:
      while True:
        if self._deadline is None:
          self._changed.wait()
          continue
        left = self._deadline - time.monotonic()
        if left > 0:
          self._changed.wait(left)
          continue
        private_apis.abort_collectives(
            tf.errors.DEADLINE_EXCEEDED,
            f"{self.task} waited more than {self.seconds:g} s for the other workers in "
            f"{self._what} (config.collective_timeout_seconds)")
        self._deadline = None


def lost_peer_line(error):
  """The `error:` line for a collective cut off by a lost or silent peer.

  TensorFlow's message names the lost task on a line of its own (`/job:worker/replica:0/task:1`
  after "The following tasks are unhealthy"); this process's own task (TF_CONFIG) is left out.
  """
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  own = f"{resolver.task_type}_{resolver.task_id}"
  lost = sorted({f"{job}_{i}" for job, i in _TASK.findall(str(error)) if job != "localhost"}
                - {own})
  who = (f"lost peer {', '.join(lost)}" if lost else
         "a peer worker failed or stopped answering")
  return (f"error: {who} ({cli.error_line(error)[:200]}); restart all workers with the same "
          "model_dir to resume from the last checkpoint")


def exit_now(code):
  """Ends the process with `code` at once, skipping TensorFlow's shutdown: in a multi-worker job
  that waits at the coordination service for every peer, 30 s or more once one has left first
  or is lost. Only once every checkpoint and W&B run is closed (train_and_evaluate's finally)."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)
