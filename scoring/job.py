"""Runs the scoring job: checks the model and inputs, runs the Beam pipeline, commits the output.

Output in --output_dir:
  predictions-00000-of-000NN.csv (or .jsonl)   one shard per (input file, split), in
                                                (file, split) order; CSV shards have a header
  manifest.json                                 written last: a directory with a manifest is a
                                                complete output
Crash safety: an old manifest and old shards are removed first; the pipeline writes complete
parts under a temporary directory; the parts are renamed into place only when every part is
there, then the manifest is written. A failed run leaves no manifest (and no shards).
"""
import collections
import json
import posixpath
import re
import sys
import uuid

from apache_beam.options import pipeline_options
import tensorflow as tf

import bertcore
from bertcore import csv_source
from preprocess import job as preprocess_job
from bertcore import schema
from scoring import pipeline as pipeline_lib
from scoring import records
from trainer import export
from trainer import predict

MANIFEST = "manifest.json"
SHARD_PATTERN = r"predictions-\d{5}-of-\d{5}\.(csv|jsonl)"


def check_model(model_dir):
  """The export's metadata; ValueError (one line) if model_dir is not an export of ours."""
  metadata = export.read_metadata(model_dir)
  if not tf.io.gfile.exists(posixpath.join(model_dir, export.SAVED_MODEL_PB)):
    raise ValueError(f"{model_dir} has export metadata but no {export.SAVED_MODEL_PB}: an "
                     "incomplete export")
  missing = [k for k in ("head", "labels", "vocab_sha256") if k not in metadata]
  if missing:
    raise ValueError(f"{model_dir}: assets/{export.METADATA_ASSET} lacks {', '.join(missing)}; "
                     "re-export the model with this package")
  return metadata


def check_inputs(patterns, encoding, columns, delimiter=","):
  """Expands the input globs and checks that each header has the id, text and pair columns.

  Returns the sorted input files; ValueError with one line if one is unusable.
  """
  files = []
  for path, header in csv_source.matched_files_with_headers(patterns, encoding, delimiter):
    for name in (columns.id, columns.text, columns.text_pair):
      if name:
        hint = "; pass --id_column= to number the rows instead" if name == columns.id else ""
        predict.column_index(header, name, path, hint)
    files.append(path)
  return files


def resolve_inputs(input_format, patterns, encoding, columns, split, metadata, model_dir,
                   delimiter=","):
  """-> (sorted input files, the Columns read from them), after every check on the inputs.

  CSV: check_inputs. TFRecord: the shards of `split` of a data directory (or a glob of shards),
  whose manifest's vocabulary must be the model's (ValueError, one line, otherwise).
  """
  if input_format == "csv":
    if columns.text_pair and "serve_text_pair" not in metadata.get("signatures", []):
      raise ValueError(f"{model_dir} has no serve_text_pair signature for --text_pair_column")
    return check_inputs(patterns, encoding, columns, delimiter), columns
  if "serve_examples" not in metadata.get("signatures", []):
    raise ValueError(f"{model_dir} has no serve_examples signature for TFRecord input")
  files, manifests = records.resolve_inputs(patterns, split)
  records.check_vocabulary(manifests, metadata, model_dir)
  return files, pipeline_lib.Columns(id=schema.EXAMPLE_ID, text=schema.INPUT_IDS,
                                     text_pair=None)


def prepare_output_dir(output_dir):
  """Removes an earlier run's manifest (first) and shards; returns a fresh temp dir."""
  tf.io.gfile.makedirs(output_dir)
  manifest = posixpath.join(output_dir, MANIFEST)
  if tf.io.gfile.exists(manifest):
    tf.io.gfile.remove(manifest)
  for name in tf.io.gfile.listdir(output_dir):
    if re.fullmatch(SHARD_PATTERN, name):
      tf.io.gfile.remove(posixpath.join(output_dir, name))
  temp_dir = posixpath.join(output_dir, f".tmp-{uuid.uuid4().hex[:12]}")
  tf.io.gfile.makedirs(temp_dir)
  return temp_dir


def commit_parts(config, output_dir):
  """Renames every complete part into place; returns the parts' counts in output order.

  RuntimeError if a part is missing (the pipeline did not finish it): nothing is renamed then.
  """
  c = config
  keys = [(i, split) for i in range(len(c.input_files)) for split in range(c.num_shards)]
  names = [pipeline_lib.part_name(key, c.output_format) for key in keys]
  missing = [n for n in names
             if not tf.io.gfile.exists(posixpath.join(c.temp_dir, n + ".json"))]
  if missing:
    raise RuntimeError(f"{len(missing)} of {len(names)} parts were not completed "
                       f"(first: {missing[0]})")
  counts = []
  for index, name in enumerate(names):
    with tf.io.gfile.GFile(posixpath.join(c.temp_dir, name + ".json")) as f:
      counts.append(json.load(f))
    shard = f"predictions-{index:05d}-of-{len(names):05d}.{c.output_format}"
    counts[-1]["file"] = shard
    tf.io.gfile.rename(posixpath.join(c.temp_dir, name), posixpath.join(output_dir, shard),
                       overwrite=True)
  return counts


def make_manifest(config, metadata, part_counts):
  """The manifest: counts, rejections by reason, label distribution, model and settings."""
  c = config
  rejected, labels = collections.Counter(), collections.Counter()
  for counts in part_counts:
    rejected.update(counts["rejected"])
    labels.update(counts["labels"])
  return {
      "package_version": bertcore.__version__,
      "input_files": list(c.input_files),
      "input_format": c.input_format,
      "encoding": c.encoding if c.input_format == "csv" else None,
      "delimiter": c.delimiter if c.input_format == "csv" else None,
      "unescape_html": c.unescape_html if c.input_format == "csv" else None,
      "columns": c.columns._asdict(),
      "model": {"path": c.model_dir, "head": metadata["head"], "labels": metadata["labels"],
                "threshold": metadata.get("threshold"),
                "vocab_sha256": metadata["vocab_sha256"],
                "max_seq_length": metadata.get("max_seq_length"),
                "truncation": metadata.get("truncation", "head")},
      "rows_read": sum(p["rows"] for p in part_counts),
      "rows_scored": sum(p["scored"] for p in part_counts),
      "rows_rejected": dict(sorted(rejected.items())),
      "rows_rejected_total": sum(rejected.values()),
      "label_histogram": {name: labels.get(name, 0) for name in metadata["labels"]},
      "output_format": c.output_format,
      "output_columns": list(c.output_columns),
      "shards": [{"file": p["file"], "rows": p["rows"]} for p in part_counts],
      "num_shards_per_file": c.num_shards,
      "sort_rows": c.sort_rows,
      "batch_size": c.batch_size,
      "precision": "bfloat16" if c.bfloat16 else "float32",
  }


def check_settings(output_format, input_format, num_shards, sort_rows, batch_size, bfloat16):
  """ValueError with one line for settings the job cannot run with; a warning for slow ones."""
  if output_format not in pipeline_lib.FORMATS:
    raise ValueError(f"--output_format must be one of {', '.join(pipeline_lib.FORMATS)}")
  if input_format not in pipeline_lib.INPUT_FORMATS:
    raise ValueError(f"--input_format must be one of {', '.join(pipeline_lib.INPUT_FORMATS)}")
  for name, value in (("num_shards", num_shards), ("sort_rows", sort_rows),
                      ("batch_size", batch_size)):
    if value < 1:
      raise ValueError(f"--{name} must be at least 1, got {value}")
  if bfloat16:
    from trainer import hardware
    if not hardware.native_bfloat16():
      print("warning: --bfloat16 on a CPU without native bfloat16 (AVX512_BF16 or AMX) is "
            "emulated and slower than float32", file=sys.stderr)


def run_job(*, model_dir, input_patterns, output_dir, columns, encoding="utf-8",
            output_format="csv", num_shards=8, sort_rows=2048, batch_size=64,
            large_model=False, model_threads=0, options=None, wandb_project=None,
            input_format="csv", split="test", bfloat16=False, delimiter=",", unescape_html=None):
  """Scores every row of the inputs; returns the manifest (also in output_dir/manifest.json).

  input_format "csv": input_patterns are CSV files or globs, read with `columns`, `delimiter`
  (the field separator) and `unescape_html` (html.unescape the texts first; None: as the
  training data was, from the export's metadata).
  input_format "tfrecord": input_patterns are data directories written by preprocess.run
  (their `split` shards) or globs of their shard files; `columns` is not used, the id is
  each record's example_id. bfloat16: serve in bfloat16 (outputs change by ~1e-3).
  Raises ValueError with a one-line message before the pipeline starts for a model directory
  that is not an export of this package, missing inputs or columns, records tokenized with
  another vocabulary, or bad settings.
  """
  check_settings(output_format, input_format, num_shards, sort_rows, batch_size, bfloat16)
  metadata = check_model(model_dir)
  files, columns = resolve_inputs(input_format, input_patterns, encoding, columns, split,
                                  metadata, model_dir, delimiter)
  output_dir = output_dir.rstrip("/")
  temp_dir = prepare_output_dir(output_dir)
  config = pipeline_lib.ScoreConfig(
      input_files=tuple(files), model_dir=model_dir, temp_dir=temp_dir, encoding=encoding,
      columns=columns,
      output_columns=tuple(predict.output_columns(metadata, columns.id)),
      output_format=output_format, num_shards=num_shards, sort_rows=sort_rows,
      batch_size=batch_size,
      multilabel_separator=(metadata.get("multilabel_separator", "|")
                            if metadata["head"] == "multilabel" else None),
      large_model=large_model, model_threads=model_threads, input_format=input_format,
      max_seq_length=metadata.get("max_seq_length"), bfloat16=bfloat16, delimiter=delimiter,
      unescape_html=predict.unescape_html_default(metadata, unescape_html))
  try:
    preprocess_job.run_pipeline(pipeline_lib.build, config,
                                options or pipeline_options.PipelineOptions([]))
    part_counts = commit_parts(config, output_dir)
  finally:
    tf.io.gfile.rmtree(temp_dir)
  manifest = make_manifest(config, metadata, part_counts)
  with tf.io.gfile.GFile(posixpath.join(output_dir, MANIFEST), "w") as f:
    f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  if wandb_project:
    log_to_wandb(wandb_project, manifest, metadata)
  return manifest


def model_artifact_name(metadata):
  """The W&B name the trainer gave this model (`model-<data digest>`), or None if unknown."""
  data_dir = (metadata.get("training") or {}).get("data_dir")
  if not data_dir:
    return None
  from bertcore import schema
  from trainer import tracking
  try:
    with tf.io.gfile.GFile(posixpath.join(data_dir, schema.MANIFEST)) as f:
      return f"model-{tracking.dataset_digest(json.load(f))}"
  except (OSError, ValueError, KeyError, tf.errors.OpError):
    return None


def log_to_wandb(project, manifest, metadata):
  """Logs counts and the label distribution (driver only: the job's chief). Never fatal: the
  predictions are complete when this runs."""
  from trainer import tracking
  mode = tracking.resolve_mode("auto")
  if mode == "disabled":
    return
  try:
    import wandb
    artifact = model_artifact_name(metadata)
    config = tracking.sanitize({"model": manifest["model"], "input_files": manifest["input_files"],
                                "model_artifact": artifact})
    with tracking._key_hidden_unless_online(mode):  # pylint: disable=protected-access
      run = wandb.init(project=project, job_type="score", config=config, mode=mode,
                       settings=wandb.Settings(quiet=True, console="off"))
    try:
      if artifact and mode == "online":
        run.use_artifact(f"{artifact}:latest")
      summary = {"rows_read": manifest["rows_read"], "rows_scored": manifest["rows_scored"],
                 "rows_rejected_total": manifest["rows_rejected_total"]}
      summary.update({f"rejected/{k}": v for k, v in manifest["rows_rejected"].items()})
      summary.update({f"label/{k}": v for k, v in manifest["label_histogram"].items()})
      run.log(summary)
      run.summary.update(summary)
    finally:
      run.finish()
  except Exception as e:  # pylint: disable=broad-except
    print(f"warning: W&B logging failed ({type(e).__name__}); the predictions are complete",
          file=sys.stderr)
