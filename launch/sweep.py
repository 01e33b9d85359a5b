"""Hyper-parameter and seed search, with trainer.task as one trial, on an existing engine.

  python -m launch.sweep optuna --space=configs/search/<name>.yaml --output_dir=DIR
      [--storage=URL] [--parallel=N] [--seeds=N] -- --config=configs/<x>.py --data_dir=...
  python -m launch.sweep wandb --space=... --model_dir=DIR [--project=P] [--dry_run] -- ...

optuna runs the study here (launch/optuna_search.py); wandb writes the W&B Sweeps YAML and
prints the `wandb sweep` / `wandb agent` commands (launch/wandb_sweep.py). Vertex AI's tuning
service (Vizier) is `python -m launch.submit vertex --tune=<space> ...`. Everything after `--`
goes to every trial's trainer.task unchanged. Bad input ends with one `error:` line (exit 2)
before any trial starts.
"""
import argparse
import os
import sys

from launch import search_space
from launch import submit
from launch import validation
from launch import wandb_sweep


def make_parser():
  parser = submit._Parser(prog="python -m launch.sweep", description=__doc__,  # pylint: disable=protected-access
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  engines = parser.add_subparsers(dest="engine", required=True, metavar="ENGINE",
                                  parser_class=submit._Parser)  # pylint: disable=protected-access

  p = engines.add_parser("optuna", help="an Optuna study run here, trials as subprocesses")
  p.add_argument("--space", required=True, help="the search space YAML (launch/search_space.py)")
  p.add_argument("--output_dir", required=True, help="trial model dirs (and study.db)")
  p.add_argument("--storage", help="an Optuna RDB URL (default: sqlite:///<output_dir>/study.db);"
                 " postgresql://... or mysql://... lets several machines share one study")
  p.add_argument("--study", help="study name (default: the space file's base name)")
  p.add_argument("--parallel", type=_whole(1), help="trials at a time (default: the space's parallel)")
  p.add_argument("--seeds", type=_whole(0), default=0,
                 help="then re-run the best trial with seeds 1..N: mean ± SD of the test metric")
  p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
  p.add_argument("--sampler_seed", type=int, help="makes the sampler's draws repeatable")
  p.add_argument("--pruner", choices=("median", "none"), default="median",
                 help="median: stop a trial whose value at an evaluation is below the median of "
                 "earlier trials at the same step")
  p.add_argument("--pruner_startup_trials", type=_whole(0), default=5,
                 help="trials that finish before the pruner stops any")
  p.add_argument("--heartbeat_seconds", type=_whole(1), default=60,
                 help="a RUNNING trial without a heartbeat for twice this long was left by a "
                 "killed driver: it is marked failed and retried")

  p = engines.add_parser("wandb", help="a W&B Sweeps YAML and the wandb sweep/agent commands")
  p.add_argument("--space", required=True, help="the search space YAML (launch/search_space.py)")
  p.add_argument("--model_dir", required=True,
                 help="base model dir: each run writes into <model_dir>/trial-<run id>")
  p.add_argument("--project", default="bert-text-classification", help="W&B project")
  p.add_argument("--method", choices=("bayes", "random", "grid"), default="bayes")
  p.add_argument("--sweep_file", help="where to write the YAML (default: <space>.wandb.yaml)")
  p.add_argument("--dry_run", action="store_true", help="print the YAML and commands only")
  return parser


def _whole(minimum):
  """An argparse type: a whole number >= minimum."""
  def parse(text):
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value
  return parse


def run_wandb(args, job_args):
  space = search_space.load(args.space)
  flags = validation.parse_flags(job_args)
  if "config" not in flags:
    raise ValueError("--config=configs/<experiment>.py is required after --")
  from trainer import objective  # pylint: disable=g-import-not-at-top  (TensorFlow-free)
  metric = space.metric or objective.default_name(validation.load_config(flags["config"]))
  sweep = wandb_sweep.build_sweep(space, metric, objective.goal(metric), job_args,
                                  args.model_dir, args.project, args.method)
  text = wandb_sweep.render(sweep)
  sweep_file = args.sweep_file or os.path.splitext(args.space)[0] + ".wandb.yaml"
  commands = wandb_sweep.commands(sweep_file, args.project, space.parallel,
                                  -(-space.trials // space.parallel))
  if args.dry_run:
    print(text, end="")
  else:
    with open(sweep_file, "w", encoding="utf-8") as f:
      f.write(text)
    print(f"wrote {sweep_file}")
  print("\n".join(commands))
  return 0


def main(argv=None):
  own, job_args = submit.split_argv(sys.argv[1:] if argv is None else list(argv))
  args = make_parser().parse_args(own)
  try:
    if args.engine == "wandb":
      return run_wandb(args, job_args)
    from launch import optuna_search  # pylint: disable=g-import-not-at-top  (TensorFlow, Optuna)
    optuna_search.quiet_optuna()
    return optuna_search.run(args, job_args)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
