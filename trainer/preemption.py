"""SIGTERM (a preemption notice): checkpoint at the next step boundary, then stop.

tf.distribute.experimental.PreemptionCheckpointHandler is not used: it counts its own run()
calls rather than our global step, owns the checkpoint manager, and ends the process itself
through exit_fn, so it can neither checkpoint when SIGTERM arrives during an evaluation nor
let the entry point print the `preempted:` line and exit 143 after a normal unwind.
"""
import signal
import threading

from trainer import checkpointing
from trainer.progress import say


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved at `step` and the run should exit non-zero."""

  def __init__(self, step):
    super().__init__(f"preempted: checkpoint saved at step {step}")
    self.step = step


class PreemptionFlag:
  """Sets a flag on SIGTERM instead of dying, so the loop can checkpoint first."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    if not self.requested:
      say("SIGTERM received: saving a checkpoint at the next step boundary")
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def stop(state, step, steps_per_epoch):
  """Saves the checkpoint of `step` and raises Preempted."""
  checkpointing.save(state, step, steps_per_epoch)
  say(f"preempted: checkpoint saved at step {step}")
  raise Preempted(step)


def stop_if_requested(flag, state, steps_per_epoch):
  """After SIGTERM: saves the current step's checkpoint and raises Preempted."""
  if flag.requested:
    stop(state, int(state.step.numpy()), steps_per_epoch)
