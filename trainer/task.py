"""Entry point: `python -m trainer.task --config=configs/<experiment>.py --data_dir=... --model_dir=...`

Thin on purpose: it parses flags, builds the strategy and calls train.train_and_evaluate (which
tests call directly). Every config field can be overridden, and that is the one way to set
one, e.g.
  --config.train.learning_rate=1e-4 --config.model.head=multiclass --config.precision=float32
Hyper-parameter search runs it as one trial (trainer/objective.py: --objective=<metric> is
reported per evaluation and at the end, by the chief, to stdout, Vertex and W&B).
Exit codes: 0 done (or already finished), 1 bad input/config or a training error (one line
`error: ...`), 143 preempted by SIGTERM after saving a checkpoint (re-run to resume).
"""
import bertcore  # noqa: F401  (before TensorFlow: selects Keras 2)

import logging as std_logging
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from bertcore import cli
from bertcore import names
from bertcore import schema

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<name>.py).",
                                lock_config=True)
flags.DEFINE_string("data_dir", None, "Preprocessed data: manifest.json + TFRecord shards.")
flags.DEFINE_string("model_dir", None, "Output: checkpoints, results, export (local or gs://).")
flags.DEFINE_enum("strategy", "one_device", names.STRATEGIES,
                  "tf.distribute strategy (multi_worker_mirrored reads TF_CONFIG).")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu ('local' on a TPU VM).")
flags.DEFINE_string("objective", "", "The validation metric reported as this run's objective "
                    "(trainer/objective.py); default: config.eval.best_metric.")
flags.DEFINE_boolean("model_dir_per_trial", False,
                     "Write into --model_dir/trial-<id>, the id a tuning service sets "
                     "(CLOUD_ML_TRIAL_ID on Vertex AI, WANDB_RUN_ID under a W&B sweep agent).")

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a killed process would have returned


def main(argv):
  del argv  # Only the program name: cli.parse_flags refuses positional arguments.
  cli.require_flags("config", "data_dir", "model_dir")
  from trainer import objective, peers, strategy as strategy_lib, train
  # TensorFlow's own INFO lines (one per checkpoint shard...) drown the progress lines.
  std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
  config = FLAGS.config
  model_dir = (objective.trial_model_dir(FLAGS.model_dir) if FLAGS.model_dir_per_trial
               else FLAGS.model_dir)
  try:
    objective_name = objective.resolve_name(FLAGS.objective, config)  # before any training
    strategy = strategy_lib.build_strategy(FLAGS.strategy, FLAGS.tpu)
    reporter = objective.Reporter(objective_name, chief=strategy_lib.is_chief(strategy))
    print(strategy_lib.describe_devices(strategy, config.precision), flush=True)
    results = train.train_and_evaluate(config, FLAGS.data_dir, model_dir, strategy,
                                       on_validation=reporter.on_validation)
    reporter.on_final(results)
  except train.Preempted:
    # train already printed "preempted: checkpoint saved ..." (on every worker).
    peers.exit_now(PREEMPTED_EXIT_CODE)
  except (schema.DataError, ValueError, train.TrainingError) as e:
    logging.debug("%s", traceback.format_exc())
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  except peers.PEER_ERRORS as e:
    # Multi-worker: a peer died or stopped answering (config.collective_timeout_seconds) and
    # the collectives were aborted. The last checkpoint is intact.
    logging.debug("%s", traceback.format_exc())
    print(peers.lost_peer_line(e), file=sys.stderr, flush=True)
    peers.exit_now(1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
