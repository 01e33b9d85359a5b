"""Vertex AI custom training on GPUs: the CustomJob request, and its submission.

One machine runs MirroredStrategy (or OneDeviceStrategy) over its GPUs; several machines run
MultiWorkerMirroredStrategy. Vertex AI starts every replica of every worker pool from the same
container and sets TF_CONFIG in each: worker pool 0 is the "chief" (exactly one replica), pool 1
holds the other "worker"s. The trainer reads its cluster from TF_CONFIG, so all replicas get the
same image, machine and arguments.
"""
from bertcore import cli
from launch import validation

# What the container runs: the trainer's entry point (docker/Dockerfile's ENTRYPOINT too; it is
# repeated here so that the request alone says what runs).
TRAINER_COMMAND = ["python", "-m", "trainer.task"]
INSTALL_HINT = "install the cloud extra: pip install '.[cloud]'"


def build_request(project, region, job_name, staging_bucket, image, machine_type,
                  accelerator_type, accelerator_count, workers, trainer_args):
  """Builds the CreateCustomJobRequest (pure; nothing is validated or sent).

  Args:
    accelerator_type: a Vertex AcceleratorType name (e.g. "NVIDIA_L4"), or None for CPU only.
    accelerator_count: GPUs per machine (0 with no accelerator).
    workers: machines in total; 1 is single-machine training.
    trainer_args: the trainer's own flags, passed through unchanged.

  Returns:
    {"parent": "projects/<p>/locations/<r>", "custom_job": CustomJob as a dict with the proto's
    field names}, which google.cloud.aiplatform_v1.CustomJob(...) accepts as is.
  """
  pools = worker_pools(image, machine_type, accelerator_type, accelerator_count, workers,
                       trainer_args)
  return {
      "parent": f"projects/{project}/locations/{region}",
      "custom_job": {
          "display_name": job_name,
          "job_spec": {
              "worker_pool_specs": pools,
              "base_output_directory": {"output_uri_prefix": f"{staging_bucket}/{job_name}"},
          },
      },
  }


def worker_pools(image, machine_type, accelerator_type, accelerator_count, workers,
                 trainer_args):
  """The worker_pool_specs of a training job: the chief, then workers - 1 others."""
  machine_spec = {"machine_type": machine_type}
  if accelerator_type:
    machine_spec.update(accelerator_type=accelerator_type, accelerator_count=accelerator_count)

  def pool(replica_count):
    return {
        "machine_spec": dict(machine_spec),
        "replica_count": replica_count,
        "container_spec": {
            "image_uri": image,
            "command": list(TRAINER_COMMAND),
            "args": list(trainer_args),
        },
    }

  pools = [pool(1)]  # the chief
  if workers > 1:
    pools.append(pool(workers - 1))
  return pools


# Search space kinds -> Vertex ParameterSpec fields (a choice of numbers is discrete, else
# categorical; Vertex passes each trial's values as `--<parameter_id>=<value>`).
_SCALES = {"log_uniform": "UNIT_LOG_SCALE", "uniform": "UNIT_LINEAR_SCALE",
           "int": "UNIT_LINEAR_SCALE"}


def parameter_spec(p):
  """A launch.search_space.Parameter -> a StudySpec.ParameterSpec dict."""
  spec = {"parameter_id": p.flag}
  if p.kind == "choice":
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values)
    if numeric:
      spec["discrete_value_spec"] = {"values": [float(v) for v in p.values]}
    else:
      spec["categorical_value_spec"] = {"values": [str(v) for v in p.values]}
    return spec
  if p.kind == "int":
    spec["integer_value_spec"] = {"min_value": int(p.low), "max_value": int(p.high)}
  else:
    spec["double_value_spec"] = {"min_value": float(p.low), "max_value": float(p.high)}
  spec["scale_type"] = _SCALES[p.kind]
  return spec


def build_tuning_request(project, region, job_name, staging_bucket, space, metric, goal, pools):
  """The CreateHyperparameterTuningJobRequest (pure): a Vizier study over `space`.

  pools: worker_pools(...) of one trial, its trainer args ending with --model_dir_per_trial
  and --objective=<metric> (the trial reports <metric> with cloudml-hypertune).
  """
  return {
      "parent": f"projects/{project}/locations/{region}",
      "hyperparameter_tuning_job": {
          "display_name": job_name,
          "study_spec": {
              "metrics": [{"metric_id": metric, "goal": goal.upper()}],
              "parameters": [parameter_spec(p) for p in space.parameters],
              # The trial's last report is the value at its best checkpoint.
              "measurement_selection_type": "LAST_MEASUREMENT",
              # Stops trials whose per-evaluation values fall below the median.
              "median_automated_stopping_spec": {"use_elapsed_duration": False},
          },
          "max_trial_count": space.trials,
          "parallel_trial_count": space.parallel,
          "trial_job_spec": {
              "worker_pool_specs": pools,
              "base_output_directory": {"output_uri_prefix": f"{staging_bucket}/{job_name}"},
          },
      },
  }


def validate(staging_bucket, image, machine_type, accelerator_type, accelerator_count, workers,
             trainer_args):
  """Checks a Vertex submission; returns (accelerator_type, accelerator_count) to request."""
  validation.require_gs("--staging_bucket", staging_bucket)
  if not image or "/" not in image:
    raise ValueError(f"--image must be a registry URI such as "
                     f"us-central1-docker.pkg.dev/PROJECT/REPO/bert-trainer:TAG (got {image!r})")
  if workers < 1:
    raise ValueError(f"--workers must be >= 1 (got {workers})")
  gpu, count = validation.resolve_accelerator(machine_type, accelerator_type, accelerator_count)
  flags = validation.parse_flags(trainer_args)
  validation.check_cloud_paths(trainer_args, required=("data_dir", "model_dir"))
  strategy = flags.get("strategy")
  validation.check_strategy(strategy, "vertex", workers=workers, accelerator_count=count)
  replicas = validation.gpu_replicas(strategy, workers, count)
  how = f"{workers} worker(s) x {max(count, 1)} {gpu or 'CPU'}, --strategy={strategy}"
  validation.check_batch(validation.global_batch_size(flags), replicas, how)
  return gpu, count


def submit(request, region):
  """Creates the CustomJob (or, for build_tuning_request's request, the
  HyperparameterTuningJob) with Google's client library; returns the created job's name."""
  try:
    # Imported here: the [cloud] extra is optional, and dry runs must work without it.
    from google.api_core import exceptions as api_exceptions  # pylint: disable=g-import-not-at-top
    from google.auth import exceptions as auth_exceptions  # pylint: disable=g-import-not-at-top
    from google.cloud import aiplatform_v1  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(INSTALL_HINT) from None
  try:
    # Credentials are looked up when the client is built: no login fails here, in one line.
    client = aiplatform_v1.JobServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
    if "hyperparameter_tuning_job" in request:
      job = client.create_hyperparameter_tuning_job(
          parent=request["parent"], hyperparameter_tuning_job=aiplatform_v1.HyperparameterTuningJob(
              request["hyperparameter_tuning_job"]))
    else:
      job = client.create_custom_job(parent=request["parent"],
                                     custom_job=aiplatform_v1.CustomJob(request["custom_job"]))
  except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as e:
    raise ValueError(f"submitting to Vertex AI failed: {type(e).__name__}: "
                     f"{cli.error_line(e)}") from e
  return job.name
