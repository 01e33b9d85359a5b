"""Runs the scoring job: checks the model and inputs, runs the Beam pipeline, commits the output.

Output in --output_dir:
  predictions-00000-of-000NN.csv (or .jsonl)   one shard per (input file, split), in
                                                (file, split) order; CSV shards have a header
  manifest.json                                 written last and atomically: a directory with a
                                                manifest is a complete output
Crash safety: an old manifest and old shards are removed first; the pipeline writes complete
parts under a temporary directory; the parts are renamed into place only when every part is
there, then the manifest is written. A failed run leaves no manifest (and no shards).

The settings (scoring.settings.Settings) are built once by scoring.run from its flags; the
driver adds what it resolves from them (the input files, the export's columns) in a
pipeline.Plan.
"""
import collections
import posixpath
import re
import sys
import uuid

from apache_beam.options import pipeline_options
import tensorflow as tf

import bertcore
from bertcore import beam_jobs
from bertcore import csv_source
from bertcore import files
from bertcore import schema
from bertcore import wandb_mode
from scoring import pipeline as pipeline_lib
from scoring import records
from serving import export_info
from serving import inputs
from serving import outputs

MANIFEST = "manifest.json"
SHARD_PATTERN = r"predictions-\d{5}-of-\d{5}\.(csv|jsonl)"


def columns_of(settings):
  """The input columns the flags name (an empty --id_column numbers the rows)."""
  return inputs.Columns(id=settings.id_column or None, text=settings.text_column,
                        text_pair=settings.text_pair_column or None)


def resolve_inputs(settings, metadata):
  """-> (sorted input files, the Columns read from them), after every check on the inputs.

  CSV: every header has the columns. TFRecord: the shards of --split of a data directory (or a
  glob of shards), whose manifest's vocabulary must be the model's. ValueError, one line.
  """
  s = settings
  if s.input_format == "csv":
    columns = columns_of(s)
    if columns.text_pair:
      export_info.check_signature(metadata, s.model, "serve_text_pair", "--text_pair_column")
    return inputs.check_inputs(s.input, s.encoding, s.delimiter, columns), columns
  export_info.check_signature(metadata, s.model, "serve_examples", "TFRecord input")
  shard_files, manifests = records.resolve_inputs(s.input, s.split)
  records.check_vocabulary(manifests, metadata, s.model)
  return shard_files, inputs.Columns(id=schema.EXAMPLE_ID, text=schema.INPUT_IDS, text_pair=None)


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


def commit_parts(plan):
  """Renames every complete part into place; returns the parts' counts in output order.

  RuntimeError if a part is missing (the pipeline did not finish it): nothing is renamed then.
  """
  s = plan.settings
  keys = [(i, split) for i in range(len(plan.input_files)) for split in range(s.num_shards)]
  names = [pipeline_lib.part_name(key, s.output_format) for key in keys]
  missing = [n for n in names
             if not tf.io.gfile.exists(posixpath.join(plan.temp_dir, n + ".json"))]
  if missing:
    raise RuntimeError(f"{len(missing)} of {len(names)} parts were not completed "
                       f"(first: {missing[0]})")
  counts = []
  for index, name in enumerate(names):
    counts.append(files.read_json(posixpath.join(plan.temp_dir, name + ".json")))
    shard = f"predictions-{index:05d}-of-{len(names):05d}.{s.output_format}"
    counts[-1]["file"] = shard
    tf.io.gfile.rename(posixpath.join(plan.temp_dir, name),
                       posixpath.join(s.output_dir, shard), overwrite=True)
  return counts


def make_manifest(plan, metadata, part_counts):
  """The manifest: counts, rejections by reason, label distribution, model and settings."""
  s = plan.settings
  csv_input = s.input_format == "csv"
  rejected, labels = collections.Counter(), collections.Counter()
  for counts in part_counts:
    rejected.update(counts["rejected"])
    labels.update(counts["labels"])
  return {
      "package_version": bertcore.__version__,
      "input_files": list(plan.input_files),
      "input_format": s.input_format,
      "encoding": s.encoding if csv_input else None,
      "delimiter": s.delimiter if csv_input else None,
      "unescape_html": plan.unescape_html if csv_input else None,
      "columns": plan.columns._asdict(),
      "model": {"path": s.model, "head": metadata["head"], "labels": metadata["labels"],
                "threshold": metadata.get("threshold"),
                "temperature": export_info.temperature(metadata),
                "vocab_sha256": metadata["vocab_sha256"],
                "max_seq_length": metadata.get("max_seq_length"),
                # Exports older than the field cut the head.
                "truncation": metadata.get("truncation", "head")},
      "rows_read": sum(p["rows"] for p in part_counts),
      "rows_scored": sum(p["scored"] for p in part_counts),
      "rows_rejected": dict(sorted(rejected.items())),
      "rows_rejected_total": sum(rejected.values()),
      # Rows scored but left without a label by --min_confidence (None: no floor).
      "min_confidence": s.min_confidence,
      "rows_low_confidence": (sum(p["low_confidence"] for p in part_counts)
                              if plan.floor else None),
      "label_histogram": {name: labels.get(name, 0) for name in metadata["labels"]},
      "output_format": s.output_format,
      "output_columns": list(plan.output_columns),
      "shards": [{"file": p["file"], "rows": p["rows"]} for p in part_counts],
      "num_shards_per_file": s.num_shards,
      "sort_rows": s.sort_rows,
      "batch_size": s.batch_size,
      "precision": export_info.compute_dtype(metadata, s.bfloat16),
  }


def check_settings(settings):
  """ValueError with one line for settings the job cannot run with; a warning for slow ones."""
  s = settings
  for name in ("num_shards", "sort_rows", "batch_size"):
    if getattr(s, name) < 1:
      raise ValueError(f"--{name} must be at least 1, got {getattr(s, name)}")
  outputs.check_min_confidence(s.min_confidence)


def make_plan(settings, metadata):
  """The pipeline.Plan (temp_dir still None): the settings + what the driver resolved from them
  and the export, after every check on the inputs."""
  input_files, columns = resolve_inputs(settings, metadata)
  floor = outputs.confidence_floor(metadata, settings.min_confidence)
  return pipeline_lib.Plan(
      settings=settings, input_files=tuple(input_files), columns=columns,
      output_columns=tuple(outputs.output_columns(metadata, columns.id, floor)), temp_dir=None,
      unescape_html=export_info.unescape_html_default(metadata, settings.unescape_html),
      multilabel_separator=export_info.multilabel_separator(metadata),
      max_seq_length=metadata.get("max_seq_length"), floor=floor)


def run_job(settings, options=None):
  """Scores every row of the inputs; returns the manifest (also in output_dir/manifest.json).

  settings: a scoring.settings.Settings (scoring.run builds it from its flags: --model,
  --input, --output_dir, the columns, --input_format, ...). Raises ValueError with a one-line message before the
  pipeline starts for a model directory that is not an export of this package, missing inputs
  or columns, records tokenized with another vocabulary, or bad settings.
  """
  s = settings
  check_settings(s)
  if s.input_format == "csv":  # Read through Beam's FileSystems (the rest: tf.io.gfile).
    csv_source.check_filesystems(s.input)
  metadata = export_info.check_export(s.model)
  warning = export_info.emulation_warning(metadata, s.bfloat16)
  if warning:
    print(warning, file=sys.stderr)
  plan = make_plan(s, metadata)  # Every input check, before the output is touched.
  plan = plan._replace(temp_dir=prepare_output_dir(s.output_dir))
  try:
    beam_jobs.run_pipeline(pipeline_lib.build, plan,
                           options or pipeline_options.PipelineOptions([]))
    part_counts = commit_parts(plan)
  finally:
    tf.io.gfile.rmtree(plan.temp_dir)
  manifest = make_manifest(plan, metadata, part_counts)
  files.write_json(posixpath.join(s.output_dir, MANIFEST), manifest)
  if s.wandb_project:
    from scoring import tracking  # pylint: disable=import-outside-toplevel
    tracking.log_run(s.wandb_project, s.output_dir, manifest, metadata)
  return manifest
