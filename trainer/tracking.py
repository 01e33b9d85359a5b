"""Weights & Biases tracking, as in the tutorial, made safe for clusters and offline machines.

One W&B run per job type (train, evaluate, save) in one group per model_dir; the data
manifest is used as a `dataset` artifact (and a distillation teacher's export as a `model`
artifact) and the export is logged as a `model` artifact, so the model's lineage
shows which data (and teacher) made it. Only the chief process logs.

Mode (config.wandb.mode=auto): bertcore.wandb_mode.resolve_mode, the rule the preprocessing
job follows too (WANDB_MODE=offline works with no network; online needs a configured API key,
else W&B is disabled). The API key is never logged: config values are filtered, and in
offline / disabled mode the key is hidden from W&B's own processes.
"""
import os
import posixpath

from absl import logging

from bertcore import names
from bertcore import wandb_mode

resolve_mode = wandb_mode.resolve_mode  # online | offline | disabled for config.wandb.mode
sanitize = wandb_mode.sanitize
dataset_digest = wandb_mode.dataset_digest


class Run:
  """A W&B run, or a no-op when W&B is off or this process is not the chief."""

  def __init__(self, run=None, mode="disabled"):
    self._run = run
    self.mode = mode

  @property
  def active(self):
    return self._run is not None

  @property
  def dir(self):
    return self._run.dir if self._run else None

  def log(self, metrics, step=None):
    if self._run:
      self._run.log(_scalars(metrics), step=step)

  def summary(self, metrics):
    if self._run:
      for k, v in _scalars(metrics).items():
        self._run.summary[k] = v

  def log_images(self, paths, step=None):
    """paths: {name: png path}."""
    if self._run:
      import wandb
      self._run.log({name: wandb.Image(p) for name, p in paths.items()}, step=step)

  def use_dataset(self, data_dir, manifest):
    """Records the preprocessed data (its schema.Manifest) as this run's input artifact."""
    if not self._run:
      return
    import wandb
    manifest_path = posixpath.join(data_dir, names.MANIFEST_FILE)
    artifact = wandb.Artifact(
        wandb_mode.dataset_artifact(manifest), type="dataset",
        description=f"preprocessed TFRecords in {data_dir}",
        metadata=sanitize({"data_dir": data_dir, "labels": manifest.labels,
                           "max_seq_length": manifest.max_seq_length,
                           "vocab_sha256": manifest.vocab_sha256,
                           "rows": {s: info.rows for s, info in manifest.splits.items()}}))
    self._run.config.update({"dataset_artifact": artifact.name, "data_dir": data_dir},
                            allow_val_change=True)
    if self.mode != "online":
      # W&B cannot use artifacts offline; the digest in the config still names the data.
      return
    if os.path.exists(manifest_path):
      artifact.add_file(manifest_path, name=names.MANIFEST_FILE)
    else:  # gs:// data: reference the manifest instead of uploading it
      artifact.add_reference(manifest_path, name=names.MANIFEST_FILE, checksum=False)
    self._run.use_artifact(artifact)

  def use_teacher(self, teacher):
    """Records a distillation teacher (distill.lineage's "teacher" dict, or None) as this
    run's input: its export as a `model` artifact, so W&B shows teacher -> student.

    The artifact has the name and files the teacher's save run logged (log_model), so W&B
    finds that version rather than storing the files again.
    """
    if not self._run or not teacher:
      return
    import wandb
    self._run.config.update({"teacher": teacher["model_dir"],
                             "teacher_config_sha256": teacher["config_sha256"]},
                            allow_val_change=True)
    if self.mode != "online":
      return  # W&B cannot use artifacts offline; the config names the teacher.
    artifact = wandb.Artifact(teacher["artifact"], type="model",
                              description=f"the distillation teacher {teacher['model_dir']}")
    export_dir = teacher["export_dir"]
    if os.path.isdir(export_dir):
      artifact.add_dir(export_dir)
    else:  # gs:// exports: referenced, as log_model does
      artifact.add_reference(export_dir, checksum=False)
    self._run.use_artifact(artifact)

  def log_model(self, export_dir, name, metadata=None):
    """Logs the exported SavedModel directory as a `model` artifact."""
    if not self._run:
      return
    import wandb
    artifact = wandb.Artifact(name, type="model", metadata=sanitize(metadata or {}))
    if os.path.isdir(export_dir):
      artifact.add_dir(export_dir)
    else:
      artifact.add_reference(export_dir, checksum=False)
    self._run.log_artifact(artifact)

  def finish(self):
    if self._run:
      self._run.finish()
      self._run = None


def _scalars(metrics):
  """Flattens nested metrics to W&B keys, keeping numbers only (lists / None are dropped)."""
  out = {}
  def walk(prefix, value):
    if isinstance(value, dict):
      for k, v in value.items():
        walk(f"{prefix}/{k}" if prefix else str(k), v)
    elif isinstance(value, bool):
      out[prefix] = int(value)
    elif isinstance(value, (int, float)):
      out[prefix] = value
  walk("", metrics)
  return out


def start_run(config, model_dir, job_type, is_chief=True):
  """Starts the W&B run of one job type (train | evaluate | save) for a model_dir.

  Returns a Run (a no-op one when W&B is disabled or this is not the chief).
  """
  mode = resolve_mode(config.wandb.mode)
  if not is_chief or mode == "disabled":
    return Run(None, "disabled")
  import wandb
  group = config.wandb.group or posixpath.basename(model_dir.rstrip("/")) or "run"
  # W&B writes its files next to the results (WANDB_DIR, if set, wins; gs:// model dirs
  # cannot hold them, W&B then uses ./wandb).
  wandb_dir = os.environ.get("WANDB_DIR") or (model_dir if "://" not in model_dir else None)
  from trainer import config as config_lib  # local import: config imports nothing from here
  with wandb_mode.key_hidden_unless_online(mode):
    run = wandb.init(
        project=config.wandb.project, entity=config.wandb.entity or None, group=group,
        job_type=job_type, name=f"{group}-{job_type}", tags=list(config.wandb.tags),
        config=sanitize(config_lib.to_dict(config)), dir=wandb_dir, mode=mode,
        reinit="finish_previous", settings=wandb.Settings(quiet=True, console="off"))
  logging.info("wandb: %s run %s (%s)", mode, run.id, job_type)
  return Run(run, mode)
