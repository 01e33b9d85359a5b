"""SIGTERM (a preemption notice): every worker checkpoints the same step, then all stop.

A worker's SIGTERM only sets its own flag. Wherever a (collective) save may follow, the flag is
combined across workers first: inside the training step (steps.make_train_step sums it with the
gradients), and otherwise by PreemptionFlag.anywhere(), a small all-reduce that every worker
calls at the same points (before and after each evaluation call, after each split of the final
evaluation, before the export). So one preempted worker makes all of them save the same step and
exit 143 together, instead of leaving its peers waiting in a collective it never joins.

Not tf.distribute.experimental.PreemptionCheckpointHandler (re-checked against TF 2.20): on a
GCP CPU or TPU VM (Vertex CPU jobs, Cloud TPU VMs) it only warns and save_checkpoint_if_preempted()
does nothing, and off GCP a TPU is taken for Google's internal one, watched through a Borg
preemption op instead of SIGTERM; elsewhere it counts its own calls in a variable it adds to our
checkpoint, restores the latest checkpoint itself when built, and its preempted worker waits for
every peer's acknowledgement in the coordination service with no timeout.
"""
import signal
import threading

import tensorflow as tf

from trainer import checkpointing
from trainer.progress import say


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved at `step` and the run should exit non-zero."""

  def __init__(self, step):
    super().__init__(f"preempted: checkpoint saved at step {step}")
    self.step = step


class PreemptionFlag:
  """Sets a flag on SIGTERM instead of dying, so the loop can checkpoint first.

  strategy: the run's tf.distribute.Strategy, across whose replicas anywhere() combines the flag.
  """

  def __init__(self, strategy):
    self.requested = False
    self._previous = None
    self._strategy = strategy
    self._summed = _make_replica_sum(strategy) if strategy.num_replicas_in_sync > 1 else None

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

  def anywhere(self):
    """Whether any worker has had SIGTERM. A collective: all workers call it at the same point."""
    if self._summed is None:
      return self.requested
    return float(self._summed(tf.constant(1.0 if self.requested else 0.0))) > 0


def _make_replica_sum(strategy):
  """A tf.function: a float32 scalar of this process -> its sum over all replicas."""
  def replica_fn(value):
    # identity: a tensor of this replica (the one input object is regrouped otherwise).
    return tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.identity(value))

  @tf.function
  def summed(value):
    return strategy.experimental_local_results(strategy.run(replica_fn, args=(value,)))[0]
  return summed


def stop(state, step, steps_per_epoch):
  """Saves the checkpoint of `step` and raises Preempted."""
  checkpointing.save(state, step, steps_per_epoch)
  say(f"preempted: checkpoint saved at step {step}")
  raise Preempted(step)


def stop_if_requested(flag, state, steps_per_epoch):
  """After SIGTERM on any worker: saves the current step's checkpoint and raises Preempted."""
  if flag.anywhere():
    stop(state, int(state.step.numpy()), steps_per_epoch)
