"""Dataflow: the preprocessing job's command with DataflowRunner pipeline options.

Submitting a Beam job to Dataflow is running the pipeline locally with `--runner=DataflowRunner`:
Beam builds the graph here, stages the code and submits it. `--setup_file=./setup.py` makes Beam
build this package and install it (with tensorflow-text, whose ops the tokenizer needs) on every
Dataflow worker; so the command runs from the repository root. preprocess.run waits for the job
(`with beam.Pipeline(...)`) and then writes plots and manifest.json from this machine, so the
launching process must keep running until the Dataflow job is done; the vocabulary is read here
too, so --vocab_file may be local.
"""
import importlib.util
import os
import shlex
import subprocess
import sys

from launch import validation

# Options the launcher owns; the same names after `--` would contradict them.
LAUNCHER_OPTIONS = ("runner", "project", "region", "temp_location", "staging_location",
                    "setup_file", "job_name")
# --job: the Beam job to run and the passthrough flags it needs (all gs:// paths).
JOB_MODULES = {"preprocess": "preprocess.run", "score": "scoring.run"}
REQUIRED_PATHS = {"preprocess": ("input", "output_dir"), "score": ("model", "input", "output_dir")}
CLOUD_HINT = ("DataflowRunner needs apache-beam's gcp extra: "
              "pip install -c constraints.txt 'apache-beam[gcp]==2.77.0'")


def build_command(project, region, job_name, staging_bucket, preprocess_args, machine_type=None,
                  max_workers=None, python="python", job="preprocess"):
  """Returns {"command": argv, "pipeline_options": {...}} for a Beam job (pure).

  Args:
    staging_bucket: gs://bucket[/prefix]; temp and staging files go under <bucket>/<job_name>/.
    preprocess_args: preprocess.run's own flags (--input, --output_dir, ...), unchanged.
    machine_type: Dataflow worker machine type, or None for Dataflow's default.
    max_workers: the autoscaling cap, or None for Dataflow's default.
    job: "preprocess" (preprocess.run) or "score" (scoring.run); preprocess_args are its flags.
  """
  options = {
      "runner": "DataflowRunner",
      "project": project,
      "region": region,
      "temp_location": f"{staging_bucket}/{job_name}/tmp",
      "staging_location": f"{staging_bucket}/{job_name}/staging",
      "setup_file": "./setup.py",
      "job_name": job_name,
  }
  if machine_type:
    options["machine_type"] = machine_type
  if max_workers:
    options["max_num_workers"] = str(max_workers)
  command = ([python, "-m", JOB_MODULES[job]] +
             [f"--{name}={value}" for name, value in options.items()] + list(preprocess_args))
  return {"command": command, "pipeline_options": options}


def validate(job_name, staging_bucket, preprocess_args, job="preprocess"):
  """Checks a Dataflow submission before anything runs."""
  validation.check_resource_name(job_name, "Dataflow job")
  validation.require_gs("--staging_bucket", staging_bucket)
  flags = validation.parse_flags(preprocess_args)
  clashes = [name for name in LAUNCHER_OPTIONS if name in flags]
  if clashes:
    raise ValueError(f"--{clashes[0]} is set by the launcher; remove it from after --")
  validation.check_cloud_paths(preprocess_args, required=REQUIRED_PATHS[job])
  if "model" in flags:  # The scoring job's export: workers load it, so it must be in the cloud.
    validation.require_gs("--model", flags["model"])


def beam_gcp_installed():
  """Whether Beam's gcp extra (DataflowRunner's client, google-apitools) is importable."""
  return importlib.util.find_spec("apitools") is not None


def submit(command):
  """Runs the preprocessing command: it submits the job to Dataflow and waits for it to finish."""
  if not beam_gcp_installed():
    raise ValueError(CLOUD_HINT)
  if not os.path.isfile("setup.py"):
    raise ValueError("run from the repository root (./setup.py is Dataflow's --setup_file)")
  print("+", shlex.join(command), flush=True)
  # "python" is this interpreter: the launcher's environment is the one with Beam installed.
  subprocess.run([sys.executable] + command[1:], check=True)
