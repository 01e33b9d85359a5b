"""Runs `python -m trainer.task` with faults injected from the test side.

  python tests/fault_launcher.py [--crash_at=<point>[:<n>]] [--signal=KILL|TERM]
      [--dump_state_dir=DIR] -- <trainer.task flags>

--crash_at: the n-th time (default 1st) this process reaches <point>, it sends itself the
signal (SIGKILL by default; TERM exercises the preemption path). Points, by what is patched:
  train_step             a train_step call returned (steps.make_train_step's function)
  checkpoint_write       a checkpoint's files are written, the `checkpoint` state file does
                         not name it yet (tf.train.CheckpointManager.save, write callbacks)
  best_checkpoint_write  the same for best/
  evaluation             an evaluation call returned (steps.make_eval_step's function)
  export                 the SavedModel is complete in its temporary directory, not yet moved
                         into place (export.move_into_place)
A line `fault injection: SIG<name> at <point> (arrival <n>)` is printed first.
--dump_state_dir: every process, chief or not, writes its end-of-training state (model,
optimizer, step, epoch) to DIR/<task name>/state-1 as the final evaluation starts.
"""
import os
import signal
import sys

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import bertcore  # noqa: E402,F401  (before TensorFlow: selects Keras 2)
import tensorflow as tf  # noqa: E402


def _after_arrivals(point, n, action):
  """A function that runs action() at its n-th call."""
  count = [0]

  def arrive():
    count[0] += 1
    if count[0] == n:
      action()
  return arrive


def kill_self(point, n, signal_name):
  def action():
    print(f"fault injection: SIG{signal_name} at {point} (arrival {n})", flush=True)
    os.kill(os.getpid(), getattr(signal, f"SIG{signal_name}"))
  return action


def install(point, n, action):
  """Patches the trainer so that action() runs at the n-th arrival at point."""
  from trainer import export, steps
  arrive = _after_arrivals(point, n, action)
  if point in ("train_step", "evaluation"):
    name = "make_train_step" if point == "train_step" else "make_eval_step"
    make = getattr(steps, name)

    def patched_make(*args, **kwargs):
      fn = make(*args, **kwargs)

      def wrapped(*a, **k):
        out = fn(*a, **k)
        arrive()
        return out
      return wrapped
    setattr(steps, name, patched_make)
  elif point in ("checkpoint_write", "best_checkpoint_write"):
    save = tf.train.CheckpointManager.save
    best = point == "best_checkpoint_write"

    def patched_save(self, *args, **kwargs):
      if (os.path.basename(self.directory.rstrip("/")) == "best") == best:
        kwargs["options"] = tf.train.CheckpointOptions(
            experimental_write_callbacks=[lambda _: arrive()])
      return save(self, *args, **kwargs)
    tf.train.CheckpointManager.save = patched_save
  elif point == "export":
    move = export.move_into_place

    def patched_move(*args, **kwargs):
      arrive()
      return move(*args, **kwargs)
    export.move_into_place = patched_move
  else:
    raise ValueError(f"unknown crash point {point!r}")


def dump_state_at_the_end(out_dir):
  """Wraps train.final_evaluation to write the run state first (every process)."""
  from trainer import strategy as strategy_lib, train
  final_evaluation = train.final_evaluation

  def wrapped(run):
    task = strategy_lib.task_name(run.strategy)
    run.state.checkpoint.write(os.path.join(out_dir, task, "state-1"))
    return final_evaluation(run)
  train.final_evaluation = wrapped


def main(argv):
  split = argv.index("--") if "--" in argv else len(argv)
  options = dict(a.lstrip("-").split("=", 1) for a in argv[1:split])
  task_args = argv[split + 1:]
  if "crash_at" in options:
    point, _, n = options["crash_at"].partition(":")
    n = int(n or 1)
    install(point, n, kill_self(point, n, options.get("signal", "KILL").upper()))
  if "dump_state_dir" in options:
    dump_state_at_the_end(options["dump_state_dir"])
  from absl import app, flags
  from trainer import task
  flags.mark_flags_as_required(["config", "data_dir", "model_dir"])
  app.run(task.main, argv=[sys.argv[0]] + task_args)


if __name__ == "__main__":
  main(sys.argv)
