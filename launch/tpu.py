"""Cloud TPU VMs: the gcloud commands that create one, install the package and start training.

Why TPU VMs (and not Vertex AI TPUs): on a TPU VM, TensorFlow runs on the host that owns the
TPU chips (`--tpu=local`), which is Google's documented path for TF 2.x TPUStrategy; it needs
nothing but the gcloud CLI. Only single-host slices (v2-8, v3-8, v4-8, v5p-8, v5litepod-1/4/8,
v6e-1/4/8) are driven here (see validation.tpu_topology).

The sequence (`build_commands`):
  1. gcloud compute tpus tpu-vm create   (skipped with --skip_create, to reuse a TPU VM)
  2. gcloud compute tpus tpu-vm scp      this repository's code, as a tarball, to every worker
  3. gcloud compute tpus tpu-vm ssh      unpack it and run docker/tpu_vm_setup.sh (pinned set +
                                         tensorflow-tpu) on every worker
  4. gcloud compute tpus tpu-vm ssh      start `python -m trainer.task <args>` detached (nohup),
                                         so that the launcher returns like a job submission;
                                         its output goes to ~/<name>.log on the TPU VM
"""
import os
import shlex
import shutil
import subprocess
import tarfile

from launch import validation

GCLOUD_TPU = ["gcloud", "compute", "tpus", "tpu-vm"]
REMOTE_DIR = "bert-tf-finetune"           # relative to the TPU VM user's home
REMOTE_TARBALL = REMOTE_DIR + ".tar.gz"
REMOTE_PYTHON = "$HOME/bert-venv/bin/python"  # the venv docker/tpu_vm_setup.sh creates
# What the TPU VM needs from this repository: the installable package and the configs.
SOURCE_ENTRIES = ("setup.py", "constraints.txt", "bertcore", "preprocess", "trainer", "launch",
                  "configs", "docker/tpu_vm_setup.sh")


def local_tarball(tpu_name):
  """Where the code tarball is written before it is copied (build/ is git-ignored)."""
  return os.path.join("build", "launch", f"{tpu_name}-src.tar.gz")


def build_commands(project, zone, tpu_name, tpu_type, runtime_version, trainer_args,
                   create=True):
  """Returns the gcloud commands (argv lists) that run the trainer on a TPU VM (pure).

  Also returns, under "logs" and "delete", the commands to follow the log and to delete the
  TPU VM afterwards (not run by the launcher: a TPU VM bills until it is deleted).
  """
  where = [f"--project={project}", f"--zone={zone}"]
  setup = (f"rm -rf {REMOTE_DIR} && mkdir {REMOTE_DIR} && "
           f"tar -xzf {REMOTE_TARBALL} -C {REMOTE_DIR} && "
           f"bash {REMOTE_DIR}/docker/tpu_vm_setup.sh")
  train = (f"cd {REMOTE_DIR} && nohup {REMOTE_PYTHON} -m trainer.task "
           f"{shlex.join(trainer_args)} > $HOME/{tpu_name}.log 2>&1 < /dev/null &")
  commands = []
  if create:
    commands.append(GCLOUD_TPU + ["create", tpu_name] + where +
                    [f"--accelerator-type={tpu_type}", f"--version={runtime_version}"])
  commands += [
      GCLOUD_TPU + ["scp", local_tarball(tpu_name), f"{tpu_name}:{REMOTE_TARBALL}"] + where +
      ["--worker=all"],
      GCLOUD_TPU + ["ssh", tpu_name] + where + ["--worker=all", f"--command={setup}"],
      GCLOUD_TPU + ["ssh", tpu_name] + where + ["--worker=all", f"--command={train}"],
  ]
  return {
      "commands": commands,
      "logs": GCLOUD_TPU + ["ssh", tpu_name] + where +
              ["--worker=0", f"--command=tail -f $HOME/{tpu_name}.log"],
      "delete": GCLOUD_TPU + ["delete", tpu_name] + where + ["--quiet"],
  }


def validate(tpu_name, tpu_type, trainer_args):
  """Checks a TPU VM submission; returns the TPU's default runtime version."""
  validation.check_resource_name(tpu_name, "TPU VM")
  replicas, runtime = validation.tpu_topology(tpu_type)
  flags = validation.parse_flags(trainer_args)
  validation.check_cloud_paths(trainer_args, required=("data_dir", "model_dir"))
  validation.check_strategy(flags.get("strategy"), "tpu_vm")
  if flags.get("tpu") != "local":
    # The trainer runs on the TPU VM, which owns the chips; a TPU name would go through the
    # Cloud TPU API instead (the trainer requires --tpu with --strategy=tpu).
    raise ValueError(f"on a TPU VM the trainer needs --tpu=local after -- "
                     f"(got {'--tpu=' + flags['tpu'] if 'tpu' in flags else 'no --tpu'})")
  validation.check_batch(validation.global_batch_size(flags), replicas,
                         f"{tpu_type} = {replicas} TPUStrategy replicas")
  return runtime


def source_files(root="."):
  """Lists the files (relative to `root`) that the TPU VM gets, sorted; no caches."""
  files = []
  for entry in SOURCE_ENTRIES:
    path = os.path.join(root, entry)
    if os.path.isfile(path):
      files.append(entry)
    for dirpath, dirnames, filenames in os.walk(path):
      dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
      for filename in filenames:
        if not filename.endswith((".pyc", ".pyo")):
          files.append(os.path.relpath(os.path.join(dirpath, filename), root))
  return sorted(files)


def make_tarball(out_path, root="."):
  """Writes the source tarball that step 2 copies; returns its path."""
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  with tarfile.open(out_path, "w:gz") as tar:
    for name in source_files(root):
      tar.add(os.path.join(root, name), arcname=name, recursive=False)
  return out_path


def submit(plan, tpu_name):
  """Runs the gcloud commands in order; stops at the first failure (CalledProcessError)."""
  if shutil.which("gcloud") is None:
    raise ValueError("the gcloud CLI is not on PATH; install the Google Cloud CLI and run "
                     "`gcloud auth login`")
  if not os.path.isfile("setup.py"):
    raise ValueError("run from the repository root (its code is copied to the TPU VM)")
  make_tarball(local_tarball(tpu_name))
  for command in plan["commands"]:
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True)
