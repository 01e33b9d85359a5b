"""Run state (model, optimizer, step, epoch), its checkpoints, and the best weights.

The model and optimizer are built elsewhere (train.build_model_and_optimizer); this module
tracks them with the counters and writes / restores their checkpoints.

  <model_dir>/checkpoints/ckpt-<step>  model + optimizer + step + epoch (resume points)
  <model_dir>/best/ckpt-<step>         the weights with the best validation metric, that value
                                       and its step
Non-chief workers of a multi-worker run take part in every save (the collectives need them)
but write into their own temporary write_dir, never into model_dir.
"""
import dataclasses
import math
import posixpath

import tensorflow as tf

from bertcore import cli

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"


class TrainingError(RuntimeError):
  """Training cannot go on (a non-finite loss with nan_policy=stop, a failed save)."""


def _counter(name, dtype, initial):
  # ONLY_FIRST_REPLICA: assigned outside replica context, the same on every replica.
  return tf.Variable(initial, dtype=dtype, trainable=False, name=name,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


@dataclasses.dataclass
class RunState:
  """What a checkpoint holds, and the manager writing checkpoints of it."""
  classifier: object
  optimizer: object
  step: tf.Variable            # int64: steps trained
  epoch: tf.Variable           # int64: epochs completed at `step`
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  scratch: bool                # a non-chief's write_dir: checkpoints are deleted once saved
  last_saved_step: int = -1


def create_state(classifier, optimizer, strategy, write_dir, keep_checkpoints, scratch):
  """The RunState of a built classifier and optimizer: their counters (created under
  strategy.scope()) and the manager of write_dir's checkpoints."""
  with strategy.scope():
    step = _counter("global_step", tf.int64, 0)
    epoch = _counter("epoch", tf.int64, 0)
  checkpoint = tf.train.Checkpoint(model=classifier, optimizer=optimizer, step=step,
                                   epoch=epoch)
  manager = tf.train.CheckpointManager(
      checkpoint, posixpath.join(write_dir, CHECKPOINT_DIR),
      max_to_keep=keep_checkpoints, step_counter=step)
  return RunState(classifier, optimizer, step, epoch, checkpoint, manager, scratch)


def final_checkpoint(model_dir):
  """The checkpoint a finished run's final evaluation and export used: best/'s, else the latest
  of checkpoints/; None when model_dir holds neither."""
  return (tf.train.latest_checkpoint(posixpath.join(model_dir, BEST_DIR))
          or tf.train.latest_checkpoint(posixpath.join(model_dir, CHECKPOINT_DIR)))


def read_weights(classifier, path):
  """Loads a checkpoint's model weights (of a run or its best/) into classifier; the rest of
  the checkpoint (optimizer, counters) is left unread."""
  tf.train.Checkpoint(model=classifier).read(path).assert_existing_objects_matched(
      ).expect_partial()


def restore_latest(state, model_dir):
  """Restores model_dir's latest checkpoint into state; returns its path, or None."""
  latest = tf.train.latest_checkpoint(posixpath.join(model_dir, CHECKPOINT_DIR))
  if latest:
    # expect_partial: Adam's slots are restored when first created; a resume with no step
    # left never creates them, and TF would warn about them at exit.
    state.checkpoint.restore(latest).assert_existing_objects_matched().expect_partial()
    state.last_saved_step = int(state.step.numpy())
  return latest


def save(state, step, steps_per_epoch):
  """Writes the checkpoint of `step` (once per step); raises TrainingError if it cannot."""
  if step == state.last_saved_step:
    return
  state.epoch.assign(step // steps_per_epoch)  # epochs completed at this step
  try:
    # Written under temporary names; the `checkpoint` state file is replaced atomically
    # last, so a checkpoint cut short by a crash never becomes the latest.
    state.manager.save(checkpoint_number=step)
  except (tf.errors.OpError, OSError) as e:
    raise TrainingError(f"could not save the checkpoint of step {step} in "
                        f"{state.manager.directory}: {cli.error_line(e)}") from None
  state.last_saved_step = step
  if state.scratch:
    remove_dir(state.manager.directory)


def remove_dir(path):
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


class BestTracker:
  """The best validation value so far; saves the weights that reached it into best/."""

  def __init__(self, classifier, strategy, write_dir):
    with strategy.scope():
      self.value = _counter("best_value", tf.float64, -1.0)
      self.step = _counter("best_step", tf.int64, -1)
    self.checkpoint = tf.train.Checkpoint(model=classifier, value=self.value, step=self.step)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, posixpath.join(write_dir, BEST_DIR), max_to_keep=1)

  def restore_value(self, model_dir):
    """Reads the best value and step recorded in model_dir/best (not the weights)."""
    best = tf.train.latest_checkpoint(posixpath.join(model_dir, BEST_DIR))
    if best:
      reader = tf.train.load_checkpoint(best)
      self.value.assign(reader.get_tensor("value/.ATTRIBUTES/VARIABLE_VALUE"))
      self.step.assign(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))

  def update(self, value, step):
    """Saves the current weights as the best if value (finite) beats the best; returns
    whether it did."""
    if value is None or not math.isfinite(value) or value <= float(self.value.numpy()):
      return False
    self.value.assign(value)
    self.step.assign(step)
    self.manager.save(checkpoint_number=step)
    return True

  def restore_weights(self, *directories):
    """Loads the best weights from the first directory holding a best/ checkpoint; returns
    whether one was found."""
    for directory in directories:
      best = tf.train.latest_checkpoint(posixpath.join(directory, BEST_DIR))
      if best:
        self.checkpoint.read(best).assert_existing_objects_matched().expect_partial()
        return True
    return False
