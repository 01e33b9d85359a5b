"""Fault injection for the reliability tests: a process kills itself at a named point of a run.

Off unless the environment asks for it (one dict lookup per call otherwise):
  BERTFT_CRASH_AT=<point>[:<n>]   the n-th time (default the 1st) this process reaches <point>,
                                  it sends itself BERTFT_CRASH_SIGNAL (default KILL; TERM
                                  exercises the preemption path instead).
Points (where the trainer calls maybe_crash / checkpoint_options):
  train_step             a training call returned; its step is neither logged nor checkpointed
  checkpoint_write       a checkpoint's files are written, the `checkpoint` state file does
                         not name it yet (the moment a half-finished save could become latest)
  best_checkpoint_write  the same for best/
  evaluation             after each evaluation batch (epoch-end and final evaluations)
  export                 the SavedModel is complete in its temporary directory, not yet moved
                         to model_dir/export
A line `fault injection: SIG<name> at <point> (arrival <n>)` is printed first, so a test can
tell the injected death from any other.
"""
import collections
import os
import signal

import tensorflow as tf

ENV = "BERTFT_CRASH_AT"
SIGNAL_ENV = "BERTFT_CRASH_SIGNAL"
_arrivals = collections.Counter()


def _target():
  """(point, n) requested by the environment, or None."""
  spec = os.environ.get(ENV)
  if not spec:
    return None
  point, _, n = spec.partition(":")
  return point, int(n or 1)


def maybe_crash(point):
  """Sends this process the configured signal if BERTFT_CRASH_AT names this arrival at point."""
  target = _target()
  if target is None or target[0] != point:
    return
  _arrivals[point] += 1
  if _arrivals[point] != target[1]:
    return
  name = os.environ.get(SIGNAL_ENV, "KILL").upper().removeprefix("SIG")
  print(f"fault injection: SIG{name} at {point} (arrival {target[1]})", flush=True)
  os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def checkpoint_options(point):
  """CheckpointOptions that call maybe_crash(point) once the files are written, or None.

  CheckpointManager.save runs these callbacks after writing the checkpoint's files and before
  its own callback records the checkpoint in the `checkpoint` state file.
  """
  target = _target()
  if target is None or target[0] != point:
    return None
  return tf.train.CheckpointOptions(experimental_write_callbacks=[lambda _: maybe_crash(point)])
