"""Submits training to Vertex AI (GPUs) or a Cloud TPU VM, and preprocessing to Dataflow.

  python -m launch.submit <vertex|tpu_vm|dataflow> [launcher flags] [--dry_run] -- [job flags]
  python -m launch.submit vertex --tune=configs/search/<space>.yaml ... -- [trial flags]

Everything after `--` goes to trainer.task (vertex, tpu_vm) or preprocess.run (dataflow;
scoring.run with `dataflow --job=score`) unchanged. The submission is validated first; `--dry_run` prints the exact request or commands
as JSON and exits 0 without contacting any cloud service. Run from the repository root.
"""
import argparse
import datetime
import json
import shlex
import subprocess
import sys

from launch import dataflow
from launch import search_space
from launch import tpu
from launch import validation
from launch import vertex
from trainer import objective  # TensorFlow-free at import: default_name, goal


class _Parser(argparse.ArgumentParser):
  """argparse that reports a bad command line as one `error:` line (exit 2)."""

  def error(self, message):
    self.exit(2, f"error: {message} (see {self.prog} -h)\n")


def _common(parser, region=True):
  parser.add_argument("--project", required=True, help="Google Cloud project id")
  if region:
    parser.add_argument("--region", required=True, help="e.g. us-central1")
  parser.add_argument("--job_name", help="job / TPU VM name (default: bert-<target>-<time>)")
  parser.add_argument("--dry_run", action="store_true",
                      help="print what would be submitted, as JSON, and exit")


def make_parser():
  parser = _Parser(prog="python -m launch.submit", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET",
                                  parser_class=_Parser)

  p = targets.add_parser("vertex", help="Vertex AI CustomJob on GPUs (one or more machines)")
  _common(p)
  p.add_argument("--staging_bucket", required=True, help="gs://bucket[/prefix] for job outputs")
  p.add_argument("--image", required=True, help="trainer image URI (built from docker/Dockerfile)")
  p.add_argument("--machine_type", required=True,
                 help="e.g. g2-standard-8 (1 x L4), a2-highgpu-4g (4 x A100), n1-standard-8 "
                 "with --accelerator_type")
  p.add_argument("--accelerator_type", help="e.g. NVIDIA_TESLA_T4 (implied by a2/a3/g2 types)")
  p.add_argument("--accelerator_count", type=int, help="GPUs per machine (implied by a2/a3/g2)")
  p.add_argument("--workers", type=int, default=1,
                 help="machines; > 1 runs MultiWorkerMirroredStrategy (chief + workers-1)")
  p.add_argument("--tune", metavar="SPACE_YAML",
                 help="a HyperparameterTuningJob over this search space (launch/search_space.py) "
                 "instead of one CustomJob: every trial is the training job with its values")

  p = targets.add_parser("tpu_vm", help="Cloud TPU VM (single host) running TPUStrategy")
  _common(p, region=False)
  p.add_argument("--zone", required=True, help="a zone that has the TPU type, e.g. us-central1-b")
  p.add_argument("--tpu_type", required=True, help="v2-8, v3-8, v4-8, v5p-8, v5litepod-8, v6e-8")
  p.add_argument("--runtime_version", help="TPU VM software version (default: the generation's "
                 "base image; docker/tpu_vm_setup.sh installs TensorFlow)")
  p.add_argument("--skip_create", action="store_true",
                 help="reuse the existing TPU VM named --job_name (e.g. to resume)")

  p = targets.add_parser("dataflow", help="the preprocessing job on Dataflow")
  _common(p)
  p.add_argument("--staging_bucket", required=True, help="gs://bucket[/prefix] for temp/staging")
  p.add_argument("--machine_type", help="Dataflow worker machine type (default: Dataflow's)")
  p.add_argument("--workers", type=int, help="maximum number of Dataflow workers (autoscaling)")
  p.add_argument("--job", choices=sorted(dataflow.JOB_MODULES), default="preprocess",
                 help="the Beam job: preprocess (preprocess.run) or score (scoring.run)")
  return parser


def split_argv(argv):
  """Splits the command line at the first `--`: (launcher args, job args)."""
  if "--" in argv:
    i = argv.index("--")
    return argv[:i], argv[i + 1:]
  return argv, []


def plan(args, job_args):
  """Validates and returns (what is printed by --dry_run, a function that submits it)."""
  if "--dry_run" in job_args:
    raise ValueError("--dry_run belongs before --, not among the job's flags")
  name = args.job_name or "bert-{}-{}".format(
      args.target.replace("_", "-"), datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
  if args.target == "vertex":
    bucket = args.staging_bucket.rstrip("/")
    if args.tune:
      return _plan_tuning(args, name, bucket, job_args)
    gpu, count = vertex.validate(bucket, args.image, args.machine_type, args.accelerator_type,
                                 args.accelerator_count, args.workers, job_args)
    request = vertex.build_request(args.project, args.region, name, bucket, args.image,
                                   args.machine_type, gpu, count, args.workers, job_args)
    return ({"target": "vertex", **request},
            lambda: print("created", vertex.submit(request, args.region)))
  if args.target == "tpu_vm":
    runtime = tpu.validate(name, args.tpu_type, job_args)
    commands = tpu.build_commands(args.project, args.zone, name, args.tpu_type,
                                  args.runtime_version or runtime, job_args,
                                  create=not args.skip_create)
    printable = {"target": "tpu_vm", **commands,
                 "shell": [shlex.join(c) for c in commands["commands"]]}

    def run():
      tpu.submit(commands, name)
      print("training started; follow it with:", shlex.join(commands["logs"]))
      print("delete the TPU VM when done:", shlex.join(commands["delete"]))
    return printable, run
  bucket = args.staging_bucket.rstrip("/")
  dataflow.validate(name, bucket, job_args, job=args.job)
  job = dataflow.build_command(args.project, args.region, name, bucket, job_args,
                               machine_type=args.machine_type, max_workers=args.workers,
                               job=args.job)
  return ({"target": "dataflow", **job, "shell": shlex.join(job["command"])},
          lambda: dataflow.submit(job["command"]))


def _plan_tuning(args, name, bucket, job_args):
  """vertex --tune: the HyperparameterTuningJob whose trials are the CustomJob's worker pools."""
  space = search_space.load(args.tune)
  flags = validation.parse_flags(job_args)
  searched = {p.flag: p for p in space.parameters}
  for flag in ("model_dir_per_trial", "objective", *searched):
    if flag in flags:
      raise ValueError(f"--{flag} is set by the tuning job: remove it after --")
  checked_args = list(job_args)
  if "data_dir" in searched:  # every searched data dir must be gs://; check one as the job's
    for value in searched["data_dir"].values:
      validation.require_gs("parameter data_dir", str(value))
    checked_args.append(f"--data_dir={searched['data_dir'].values[0]}")
  gpu, count = vertex.validate(bucket, args.image, args.machine_type, args.accelerator_type,
                               args.accelerator_count, args.workers, checked_args)
  if "config" not in flags:
    raise ValueError("--config=configs/<experiment>.py is required after -- for a tuning job")
  metric = space.metric or objective.default_name(validation.load_config(flags["config"]))
  trial_args = [*job_args, "--model_dir_per_trial", f"--objective={metric}"]
  pools = vertex.worker_pools(args.image, args.machine_type, gpu, count, args.workers,
                              trial_args)
  request = vertex.build_tuning_request(args.project, args.region, name, bucket, space, metric,
                                        objective.goal(metric), pools)
  return ({"target": "vertex", **request},
          lambda: print("created", vertex.submit(request, args.region)))


def main(argv=None):
  own, job_args = split_argv(sys.argv[1:] if argv is None else list(argv))
  args = make_parser().parse_args(own)
  try:
    printable, run = plan(args, job_args)
    if args.dry_run:
      print(json.dumps(printable, indent=2))
      return 0
    run()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except subprocess.CalledProcessError as e:
    print(f"error: command failed with exit code {e.returncode}: {shlex.join(e.cmd)}",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
