"""Checks a cloud submission before anything is sent: paths, machines, replicas, batch, strategy.

Every check raises ValueError with one line that says what is wrong and how to fix it;
`launch.submit` prints it as `error: <message>` and exits 2. Nothing here touches the network
or imports TensorFlow, so `--dry_run` works on any machine.
"""
import hashlib
import importlib.util
import os
import re

from ml_collections.config_flags import config_path as ml_config_path

from bertcore.names import STRATEGIES

# Passthrough flags that name data the cloud job reads or writes: a local path there would be
# a path on the remote machine, which does not have the user's files.
CLOUD_PATH_FLAGS = ("data_dir", "model_dir", "input", "output_dir")

# The trainer's config field that holds the global batch (per-replica batch × replicas).
GLOBAL_BATCH_FIELD = "train.global_batch_size"

# Vertex AI GPU machine families. Accelerator-optimized machines (A2, A3, G2) come with a fixed
# GPU model and count; N1 machines take a GPU model and one of a few counts. Sources: Vertex AI
# "Configure compute resources for custom training" and Compute Engine "GPU machine types".
# Vertex also caps the vCPUs of an N1 machine per GPU count; that is not checked here (Vertex
# rejects such a request at submission with its own message).
FIXED_GPU_MACHINES = {
    "a2-highgpu-1g": ("NVIDIA_TESLA_A100", 1),
    "a2-highgpu-2g": ("NVIDIA_TESLA_A100", 2),
    "a2-highgpu-4g": ("NVIDIA_TESLA_A100", 4),
    "a2-highgpu-8g": ("NVIDIA_TESLA_A100", 8),
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16),
    "a2-ultragpu-1g": ("NVIDIA_A100_80GB", 1),
    "a2-ultragpu-2g": ("NVIDIA_A100_80GB", 2),
    "a2-ultragpu-4g": ("NVIDIA_A100_80GB", 4),
    "a2-ultragpu-8g": ("NVIDIA_A100_80GB", 8),
    "a3-highgpu-8g": ("NVIDIA_H100_80GB", 8),
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "g2-standard-4": ("NVIDIA_L4", 1),
    "g2-standard-8": ("NVIDIA_L4", 1),
    "g2-standard-12": ("NVIDIA_L4", 1),
    "g2-standard-16": ("NVIDIA_L4", 1),
    "g2-standard-24": ("NVIDIA_L4", 2),
    "g2-standard-32": ("NVIDIA_L4", 1),
    "g2-standard-48": ("NVIDIA_L4", 4),
    "g2-standard-96": ("NVIDIA_L4", 8),
}
N1_GPU_COUNTS = {
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_P4": (1, 2, 4),
}
_N1 = re.compile(r"^n1-(standard|highmem|highcpu)-\d+$")
_GPU_FAMILY = re.compile(r"^(a2|a3|a4|g2|g4)-")

# Cloud TPU VM types `<generation>-<n>`. What <n> counts, and what TPUStrategy makes a replica:
#   v2, v3: n = TensorCores; each core is a replica            -> v3-8: 8 replicas
#   v4, v5p: n = TensorCores, 2 per chip fused ("megacore");
#            each chip is a replica                            -> v4-8: 4 replicas
#   v5litepod (v5e), v6e: n = chips, 1 core each; chip=replica -> v5litepod-8: 8 replicas
# One TPU VM host serves 8 cores (v2/v3), 4 chips (v4/v5p) or up to 8 chips (v5e/v6e), so
# n <= 8 is a single-host slice.
TPU_GENERATIONS = {
    # generation: (n per replica, default runtime version)
    "v2": (1, "tpu-ubuntu2204-base"),
    "v3": (1, "tpu-ubuntu2204-base"),
    "v4": (2, "tpu-ubuntu2204-base"),
    "v5p": (2, "v2-alpha-tpuv5"),
    "v5litepod": (1, "v2-alpha-tpuv5-lite"),
    "v6e": (1, "v2-alpha-tpuv6e"),
}
_TPU_TYPE = re.compile(r"^(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)$")
# Dataflow job and TPU node names: lowercase letters, digits and hyphens, starting with a letter.
_RESOURCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def flag_items(args):
  """Reads absl/argparse-style flags from a passthrough argument list, in order.

  Hand-written because no flag library can read them here: the flags belong to another
  program (trainer.task's absl flags, preprocess.run's argparse + every Beam pipeline option),
  whose definitions this TensorFlow-free launcher does not import; a library parser needs the
  definitions to know which flags take a value. This reads only the generic shapes.

  Args:
    args: e.g. ["--data_dir=gs://b/d", "--strategy", "tpu", "--model_dir_per_trial",
      "@configs/data/x.args"].
      An `@file` argument (preprocess.run's flag files) is read in place: one flag per line,
      blank and `#` lines skipped.

  Returns:
    [(name, value), ...]; a bare `--flag` has the value "true".
  """
  expanded = []
  for arg in args:
    if arg.startswith("@"):
      try:
        with open(arg[1:], encoding="utf-8") as f:
          expanded += [line.strip() for line in f
                       if line.strip() and not line.strip().startswith("#")]
      except OSError as e:
        raise ValueError(f"cannot read flag file {arg[1:]}: {e.strerror}") from None
    else:
      expanded.append(arg)
  items = []
  i = 0
  while i < len(expanded):
    arg = expanded[i]
    if arg.startswith("-"):
      name, eq, value = arg.lstrip("-").partition("=")
      if not eq:
        if i + 1 < len(expanded) and not expanded[i + 1].startswith("-"):
          value = expanded[i + 1]
          i += 1
        else:
          value = "true"
      items.append((name, value))
    i += 1
  return items


def parse_flags(args):
  """{name: value} of flag_items(args), the last occurrence of a flag winning (as in absl)."""
  return dict(flag_items(args))


def require_gs(flag, value):
  """Raises unless `value` is a gs:// URI (cloud machines cannot see local files)."""
  if not value or not value.startswith("gs://") or len(value) <= len("gs://"):
    raise ValueError(f"{flag} must be a gs:// path for a cloud run (got {value!r})")


def check_cloud_paths(args, required):
  """Checks the passthrough data/model paths: every one given must be gs://.

  Args:
    args: the passthrough argument list (a repeated flag, like preprocess's --input, is checked
      at every occurrence).
    required: flag names that must be present (e.g. ("data_dir", "model_dir")).
  """
  items = flag_items(args)
  for name in required:
    if name not in dict(items):
      raise ValueError(f"--{name}=gs://... is required after -- for a cloud run")
  for name, value in items:
    if name in CLOUD_PATH_FLAGS:
      require_gs(f"--{name}", value)


def check_resource_name(name, what):
  if not _RESOURCE_NAME.match(name):
    raise ValueError(f"--job_name {name!r} is not a valid {what} name: use lowercase letters, "
                     "digits and hyphens, starting with a letter, at most 63 characters")


def resolve_accelerator(machine_type, accelerator_type=None, accelerator_count=None):
  """Returns the (accelerator_type, count) a Vertex machine gets, or raises if invalid.

  Accelerator-optimized machines (a2/a3/g2) carry a fixed GPU model and count, so both may be
  omitted; N1 machines need --accelerator_type and take one of a few counts (default 1). Other
  machines run without accelerators: returns (None, 0).
  """
  if machine_type in FIXED_GPU_MACHINES:
    gpu, count = FIXED_GPU_MACHINES[machine_type]
    if accelerator_type not in (None, gpu) or accelerator_count not in (None, count):
      raise ValueError(
          f"{machine_type} comes with {count} x {gpu}; got {accelerator_count or count} x "
          f"{accelerator_type or gpu} (omit --accelerator_type/--accelerator_count or match them)")
    return gpu, count
  if _GPU_FAMILY.match(machine_type):
    raise ValueError(f"unknown GPU machine type {machine_type!r}; known: "
                     f"{', '.join(sorted(FIXED_GPU_MACHINES))}, or n1-* with "
                     f"{'/'.join(sorted(N1_GPU_COUNTS))}")
  if _N1.match(machine_type):
    if accelerator_type is None:
      if accelerator_count:
        raise ValueError("--accelerator_count needs --accelerator_type on n1 machines")
      return None, 0
    if accelerator_type not in N1_GPU_COUNTS:
      raise ValueError(f"{machine_type} takes {', '.join(sorted(N1_GPU_COUNTS))}, not "
                       f"{accelerator_type} (A100/L4/H100 come with a2/g2/a3 machine types)")
    count = 1 if accelerator_count is None else accelerator_count
    if count not in N1_GPU_COUNTS[accelerator_type]:
      counts = "/".join(str(c) for c in N1_GPU_COUNTS[accelerator_type])
      raise ValueError(f"{accelerator_type} on {machine_type} comes in counts of {counts}, "
                       f"not {count}")
    return accelerator_type, count
  if accelerator_type or accelerator_count:
    raise ValueError(f"{machine_type} cannot take GPUs on Vertex AI; use an n1-* machine with "
                     "--accelerator_type, or an a2/a3/g2 machine type")
  return None, 0


def tpu_topology(tpu_type):
  """Returns (replicas, default_runtime_version) of a single-host Cloud TPU type.

  Raises for unknown names and for multi-host slices (n > 8), which this launcher does not
  drive: their TensorFlow setup (pod runtime, TPU_NAME on worker 0) is not verified here.
  """
  match = _TPU_TYPE.match(tpu_type or "")
  if not match:
    raise ValueError(f"unknown --tpu_type {tpu_type!r}; expected e.g. v2-8, v3-8, v4-8, v5p-8, "
                     "v5litepod-8, v6e-8")
  generation, n = match.group(1), int(match.group(2))
  per_replica, runtime = TPU_GENERATIONS[generation]
  if n > 8:
    raise ValueError(f"{tpu_type} is a multi-host TPU slice; this launcher runs single-host "
                     f"slices only ({generation}-8 or smaller)")
  if n % per_replica:
    raise ValueError(f"{tpu_type}: {generation} sizes count TensorCores, {per_replica} per chip")
  return n // per_replica, runtime


def check_strategy(strategy, target, workers=1, accelerator_count=0):
  """Raises unless the trainer's --strategy fits where it will run."""
  if strategy is None:
    raise ValueError("--strategy=... is required after -- for a cloud run "
                     f"(one of {', '.join(STRATEGIES)})")
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown --strategy={strategy} (one of {', '.join(STRATEGIES)})")
  if target == "tpu_vm":
    if strategy != "tpu":
      raise ValueError(f"the tpu_vm target runs TPUStrategy: pass --strategy=tpu, "
                       f"not --strategy={strategy}")
    return
  if strategy == "tpu":
    raise ValueError("--strategy=tpu needs a TPU: use the tpu_vm target")
  if workers > 1 and strategy != "multi_worker_mirrored":
    raise ValueError(f"--workers={workers} needs --strategy=multi_worker_mirrored, "
                     f"not --strategy={strategy}")
  if workers == 1 and strategy == "multi_worker_mirrored":
    raise ValueError("--strategy=multi_worker_mirrored needs --workers > 1 "
                     "(use mirrored on a single machine)")
  if strategy == "one_device" and accelerator_count > 1:
    raise ValueError(f"--strategy=one_device would use 1 of {accelerator_count} GPUs; "
                     "pass --strategy=mirrored")


def gpu_replicas(strategy, workers, accelerator_count):
  """Replicas in sync for the GPU strategies (a CPU-only machine is one replica)."""
  if strategy == "one_device":
    return 1
  return workers * max(accelerator_count, 1)


def config_path(config_flag):
  """Returns the file part of a `--config=path.py[:arg]` value, checked to be shippable.

  The config file travels inside the trainer image or the TPU VM's copy of this repository,
  so it must be a relative path inside the current directory (the repository root).
  """
  path = config_flag.partition(":")[0]
  if os.path.isabs(path) or os.path.normpath(path).startswith(".."):
    raise ValueError(f"--config={path} must be a path inside this repository (e.g. configs/x.py): "
                     "the cloud job reads it from its copy of the code")
  if not os.path.isfile(path):
    raise ValueError(f"config file not found: {path} (run from the repository root)")
  return path


def load_config(config_flag):
  """Loads an ml_collections-style config file: `path.py` or `path.py:arg` -> get_config(...).

  Mirrors ml_collections.config_flags (the trainer's `--config`) so that the launcher sees the
  same values the trainer will, without importing the trainer (and TensorFlow).
  """
  path = config_path(config_flag)
  arg = config_flag.partition(":")[2]
  name = "launch_config_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # A broken config is the user's input: report it in one line.
    raise ValueError(f"cannot load config {path}: {type(e).__name__}: {e}") from e
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"config {path} has no get_config() function")
  return module.get_config(arg) if arg else module.get_config()


def global_batch_size(flags):
  """The global batch the trainer will use: the passthrough override, else the config file's."""
  override = flags.get("config." + GLOBAL_BATCH_FIELD)
  if override is not None:
    try:
      return int(override)
    except ValueError:
      raise ValueError(f"--config.{GLOBAL_BATCH_FIELD}={override} is not an integer") from None
  if "config" not in flags:
    raise ValueError("--config=configs/<experiment>.py is required after -- for a cloud run")
  try:  # the dotted lookup config_flags itself uses for --config.<a.b>=...
    value = ml_config_path.get_value(GLOBAL_BATCH_FIELD, load_config(flags["config"]))
  except (KeyError, AttributeError):
    value = None
  if value is None:
    raise ValueError(f"config {flags['config']} has no {GLOBAL_BATCH_FIELD}; pass "
                     f"--config.{GLOBAL_BATCH_FIELD}=N after --")
  return int(value)


def check_batch(global_batch, replicas, how):
  """Raises unless the global batch splits evenly into `replicas` per-replica batches."""
  if global_batch <= 0 or global_batch % replicas:
    raise ValueError(f"global batch {global_batch} does not divide across {replicas} replicas "
                     f"({how}); use a multiple of {replicas} "
                     f"(--config.{GLOBAL_BATCH_FIELD}=N after --)")
