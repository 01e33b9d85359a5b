"""Scoring's W&B run: counts, the label distribution and the data -> model -> predictions lineage.

The export records the data directory it was trained on (assets/metadata.json
`training.data_dir`); that directory's manifest names the artifacts the trainer's W&B runs made:
the dataset `data-<digest>` and the model `model-<digest>` (bertcore.wandb_mode). The scoring
run logs its output as a `predictions` artifact (manifest.json, and the shards by reference)
whose metadata names the model and dataset artifacts, and, online, uses the model artifact as
its input, so W&B's lineage graph reads data -> model -> predictions.

Offline (WANDB_MODE=offline) W&B refuses to use an artifact, so the input edge is not recorded:
the run's config and the predictions artifact's metadata still name the model and the data, and
the predictions artifact is logged (`wandb sync` uploads it). Never fatal: the predictions are
complete when this runs; a failure is one `warning:` line.
"""
import os
import posixpath
import re
import sys

import tensorflow as tf

from bertcore import cli
from bertcore import schema
from bertcore import wandb_mode

ARTIFACT_TYPE = "predictions"


def lineage(metadata):
  """{dataset_artifact, model_artifact} of the export's training data; {} if it is unknown.

  An export without `training.data_dir` (not made by trainer.task) has no lineage; a data
  directory that cannot be read any more gets one warning line.
  """
  data_dir = (metadata.get("training") or {}).get("data_dir")
  if not data_dir:
    return {}
  try:
    manifest = schema.read_manifest(data_dir)
  except (OSError, ValueError, tf.errors.OpError) as e:
    print(f"warning: W&B lineage: cannot read the training data's manifest ({cli.error_line(e)});"
          " the predictions are logged without their model and dataset artifacts",
          file=sys.stderr)
    return {}
  return {"dataset_artifact": wandb_mode.dataset_artifact(manifest),
          "model_artifact": wandb_mode.model_artifact(manifest)}


def artifact_name(output_dir):
  """The predictions artifact's name: `predictions-<output dir name>` (W&B's allowed chars)."""
  name = posixpath.basename(output_dir.rstrip("/")) or "output"
  return f"{ARTIFACT_TYPE}-{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}"


def summary_of(manifest):
  """The run's summary: counts, rejections by reason, the label distribution."""
  summary = {"rows_read": manifest["rows_read"], "rows_scored": manifest["rows_scored"],
             "rows_rejected_total": manifest["rows_rejected_total"]}
  if manifest.get("rows_low_confidence") is not None:
    summary["rows_low_confidence"] = manifest["rows_low_confidence"]
  summary.update({f"rejected/{k}": v for k, v in manifest["rows_rejected"].items()})
  summary.update({f"label/{k}": v for k, v in manifest["label_histogram"].items()})
  return summary


def predictions_artifact(output_dir, manifest, names):
  """The `predictions` artifact: the job's manifest.json, the shards by reference."""
  import wandb  # pylint: disable=import-outside-toplevel
  artifact = wandb.Artifact(
      artifact_name(output_dir), type=ARTIFACT_TYPE,
      description=f"scoring.run predictions in {output_dir}",
      metadata=wandb_mode.sanitize(dict(
          names, model_path=manifest["model"]["path"], output_dir=output_dir,
          rows_read=manifest["rows_read"], rows_scored=manifest["rows_scored"],
          rows_rejected=manifest["rows_rejected"])))
  manifest_path = posixpath.join(output_dir, "manifest.json")
  local = "://" not in output_dir
  if local:
    artifact.add_file(manifest_path, name="manifest.json")
  else:
    artifact.add_reference(manifest_path, name="manifest.json", checksum=False)
  for shard in manifest["shards"]:
    path = posixpath.join(output_dir, shard["file"])
    uri = f"file://{os.path.abspath(path)}" if local else path
    artifact.add_reference(uri, name=shard["file"], checksum=False)
  return artifact


def log_run(project, output_dir, manifest, metadata):
  """Logs the scoring run to W&B if the mode allows (driver only: the job's chief)."""
  mode = wandb_mode.resolve_mode("auto")
  if mode == "disabled":
    return
  try:
    import wandb  # pylint: disable=import-outside-toplevel
    names = lineage(metadata)
    config = wandb_mode.sanitize({"model": manifest["model"],
                                  "input_files": manifest["input_files"], **names})
    with wandb_mode.key_hidden_unless_online(mode):
      run = wandb.init(project=project, job_type="score", config=config, mode=mode,
                       settings=wandb.Settings(quiet=True, console="off"))
    try:
      if mode == "online" and names:
        run.use_artifact(f"{names['model_artifact']}:latest")
      summary = summary_of(manifest)
      run.log(summary)
      run.summary.update(summary)
      run.log_artifact(predictions_artifact(output_dir, manifest, names))
    finally:
      run.finish()
  except Exception as e:  # pylint: disable=broad-except
    print(f"warning: W&B logging failed ({type(e).__name__}: {cli.error_line(e)}); the "
          "predictions are complete", file=sys.stderr)
