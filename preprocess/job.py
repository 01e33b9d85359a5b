"""Runs the preprocessing job: checks the inputs, runs the Beam pipeline, writes the manifest.

Order matters for crash safety: an old manifest is removed first, shards and the dead-letter
file are written by the pipeline, and the manifest is written last, so a directory with a
manifest is always a complete output.
"""
import dataclasses
import posixpath
import re
import sys

from apache_beam.options import pipeline_options
import tensorflow as tf

import bertcore
from bertcore import beam_jobs
from bertcore import cli
from bertcore import files
from bertcore import names
from bertcore import schema
from bertcore import tokenization
from bertcore import csv_source
from preprocess import pipeline as pipeline_lib
from preprocess import rows
from preprocess import stats

TEMP_DIR = "_preprocess_tmp"


def prepare_output_dir(output_dir):
  """Removes what an earlier run wrote (manifest first), so stale files never mix in."""
  manifest = posixpath.join(output_dir, names.MANIFEST_FILE)
  if tf.io.gfile.exists(manifest):
    tf.io.gfile.remove(manifest)
  for split in names.SPLITS:
    split_dir = posixpath.join(output_dir, split)
    if tf.io.gfile.isdir(split_dir):
      for name in tf.io.gfile.listdir(split_dir):
        if re.fullmatch(rf"{split}-\d{{5}}-of-\d{{5}}\.tfrecord(\.gz)?(\.partial)?", name):
          tf.io.gfile.remove(posixpath.join(split_dir, name))
    tf.io.gfile.makedirs(split_dir)
  for name in (names.DEAD_LETTER_FILE,) + tuple(stats.PLOTS.values()) + (stats.LABEL_PLOT,):
    path = posixpath.join(output_dir, name)
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  temp_dir = posixpath.join(output_dir, TEMP_DIR)
  if tf.io.gfile.exists(temp_dir):
    tf.io.gfile.rmtree(temp_dir)
  tf.io.gfile.makedirs(temp_dir)
  return temp_dir


def check_inputs(patterns, encoding, columns, delimiter):
  """Expands the input globs and checks every header; ValueError with one line if unusable."""
  files = []
  for path, header in csv_source.matched_files_with_headers(patterns, encoding, delimiter):
    rows.make_layout(header, columns, path)
    files.append(path)
  return files


def check_input_roles(input_patterns, test_input_patterns, encoding, columns, delimiter):
  """-> (input files, test files), each sorted; ValueError if a file is given in both roles."""
  input_files = check_inputs(input_patterns, encoding, columns, delimiter)
  test_files = (check_inputs(test_input_patterns, encoding, columns, delimiter)
                if test_input_patterns else [])
  both = sorted(set(input_files) & set(test_files))
  if both:
    raise ValueError(f"{both[0]} is both an --input and a --test_input file")
  return input_files, test_files


def check_settings(settings):
  """ValueError with one line for settings the job cannot run with."""
  s = settings
  if not 0 <= s.train_fraction <= 1 or not 0 <= s.validation_fraction <= 1 or (
      s.train_fraction + s.validation_fraction > 1 + 1e-9):
    raise ValueError(f"split fractions must be in [0, 1] and sum to at most 1, got train="
                     f"{s.train_fraction} validation={s.validation_fraction}")
  if s.num_shards < 1:
    raise ValueError(f"--num_shards must be at least 1, got {s.num_shards}")
  if s.max_seq_length < 3:
    raise ValueError(f"--max_seq_length must be at least 3 ([CLS] a [SEP]), got "
                     f"{s.max_seq_length}")
  if s.batch_size < 1:
    raise ValueError(f"--batch_size must be at least 1, got {s.batch_size}")
  names.check_truncation(s.truncation, what="--truncation")
  if s.chunking is not None:
    check_chunking(s)


def check_chunking(settings):
  """ValueError (one line, naming the flags) for --max_chunks settings that cannot be cut.

  The window length is --max_seq_length; whether it fits the encoder's positions is checked
  where the encoder is known, by the trainer (as for unchunked data).
  """
  if settings.columns.text_pair is not None:
    raise ValueError(
        "chunking reads single texts; --text_pair_column is set: pair tasks have short texts, "
        "and a window cannot hold the second segment beside a long first one; drop "
        "--max_chunks to truncate the pairs (--truncation)")
  if settings.chunking.max_chunks < 0:
    raise ValueError(f"--max_chunks must be 0 (off: texts are truncated) or a number of "
                     f"windows >= 1, got {settings.chunking.max_chunks}")
  try:
    settings.chunking.check()
  except ValueError as e:
    geometry = settings.chunking
    raise ValueError(
        f"--max_chunks={geometry.max_chunks} --chunk_overlap={geometry.chunk_overlap} "
        f"--max_seq_length={geometry.chunk_length} (the window length, chunk_length): "
        f"{e}") from None


def run_job(settings, options=None):
  """Runs the whole job and returns its schema.Manifest (also written to output_dir).

  settings: a preprocess.settings.Settings (preprocess.run builds it from the flags).
  options: Beam's PipelineOptions (default: run locally).

  Raises ValueError (or DataError) with a one-line message for fatal problems: bad settings,
  no input files, a required column missing from a header, no valid row at all.
  """
  s = settings
  check_settings(s)
  csv_source.check_filesystems([*s.input_patterns, s.output_dir])
  vocab = tokenization.load_vocab(s.vocab_path)
  input_files, test_files = check_input_roles(s.input_patterns, s.test_input_patterns,
                                              s.encoding, s.columns, s.delimiter)
  temp_dir = prepare_output_dir(s.output_dir)

  plan = pipeline_lib.Plan(
      # Test files first: the first row of an id by (file index, line) is the one kept.
      settings=s, input_files=tuple(test_files + input_files), test_files=tuple(test_files),
      temp_dir=temp_dir, vocab=vocab)
  beam_jobs.run_pipeline(pipeline_lib.build, plan,
                         options or pipeline_options.PipelineOptions([]))
  summary = files.read_json(posixpath.join(temp_dir, pipeline_lib.SUMMARY))
  tf.io.gfile.rmtree(temp_dir)
  manifest = make_manifest(plan, summary)
  if manifest.rows_written == 0:
    raise schema.DataError(
        f"no valid row in {len(plan.input_files)} input file(s) ({manifest.rows_read} read, "
        f"rejected: {manifest.rows_rejected}); see "
        f"{posixpath.join(s.output_dir, names.DEAD_LETTER_FILE)}")
  plots = stats.write_plots(s.output_dir, split_stats_of(summary), manifest.labels)
  manifest = dataclasses.replace(manifest, plots=plots)
  schema.write_manifest(s.output_dir, manifest)
  if s.labels is None:  # Discovered, not given: a rare one is probably a typo.
    warn_rare_labels(manifest)
  if stats.wandb_enabled(s.wandb_project):
    # After the manifest: the data is complete whatever happens to the optional logging.
    try:
      stats.log_to_wandb(s.wandb_project, manifest, s.output_dir)
    except Exception as e:  # pylint: disable=broad-except
      print(f"warning: W&B logging failed ({type(e).__name__}: {cli.error_line(e)}); "
            "the data is complete", file=sys.stderr)
  return manifest


def warn_rare_labels(manifest):
  """Prints one warning line (stderr) per discovered label that looks like a typo."""
  counts = stats.label_counts(manifest)
  for name in stats.rare_labels(counts, manifest.rows_written):
    print(stats.rare_label_warning(name, counts, manifest.rows_written), file=sys.stderr,
          flush=True)


def split_stats_of(summary):
  split_stats = {split: stats.empty_stats() for split in names.SPLITS}
  for shard in summary["shards"]:
    stats.merge_stats(split_stats[shard["split"]], stats.from_json(shard["stats"]))
  return split_stats


def make_manifest(plan, summary):
  """The schema.Manifest of a finished pipeline, from its summary (plots are added later)."""
  c = plan.settings
  labels = list(summary["labels"])
  split_stats = split_stats_of(summary)
  splits = {}
  for split in names.SPLITS:
    shard_rows = {s["file"]: s["stats"]["rows"] for s in summary["shards"] if s["split"] == split}
    splits[split] = schema.SplitInfo(**stats.split_summary(split_stats[split], labels, shard_rows,
                                                           c.record_length, c.chunking))
  rows_rejected = dict(sorted(summary["rows_rejected"].items()))
  return schema.Manifest(
      package_version=bertcore.__version__,
      input_files=[path for path in plan.input_files if path not in plan.test_files],
      test_input_files=list(plan.test_files),
      encoding=c.encoding,
      delimiter=c.delimiter,
      unescape_html=c.row_config.unescape_html,
      columns=c.columns._asdict(),
      labels=labels,
      multi_label=c.row_config.multi_label,
      vocab_sha256=tokenization.vocab_sha256(plan.vocab),
      vocab_size=len(plan.vocab),
      lower_case=c.lower_case,
      tokenizer={"type": "FastBertTokenizer", "vocab_file": c.vocab_path,
                 "lower_case": c.lower_case},
      max_seq_length=c.max_seq_length,
      truncation=c.truncation,
      compression=c.compression,
      num_shards=c.num_shards,
      split_fractions={
          "train": c.train_fraction, "validation": c.validation_fraction,
          # max: 1 - 0.9 - 0.1 rounds to -0.0 (with --test_input, no --input row is test).
          "test": max(0.0, round(1 - c.train_fraction - c.validation_fraction, 12))},
      rows_read=sum(summary["rows_read"].values()),
      rows_written=sum(s.rows for s in splits.values()),
      rows_rejected=rows_rejected,
      rows_rejected_total=sum(rows_rejected.values()),
      dead_letter_file=names.DEAD_LETTER_FILE,
      splits=splits,
      plots=[],
      chunking=None if c.chunking is None else c.chunking.to_json(),
  )
