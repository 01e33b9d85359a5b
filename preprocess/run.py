r"""Entry point: `python -m preprocess.run --input=... --output_dir=... --vocab_file=...`.

Turns labelled (or unlabeled) CSV files into tokenized, sharded TFRecords plus manifest.json,
rejected.jsonl and plots/ in --output_dir. Flags not defined here are Beam pipeline options and
go to Beam, e.g. on Dataflow:

  python -m preprocess.run --input=gs://b/train.csv --output_dir=gs://b/data \
      --vocab_file=gs://b/vocab.txt --runner=DataflowRunner --project=P --region=R \
      --temp_location=gs://b/tmp --setup_file=./setup.py

(--setup_file installs this package, hence tensorflow-text's ops, on the workers; without it
they fail with "Op type not registered"). --runner=DirectRunner (the default) runs locally on
Beam's FnApiRunner without the Prism download; --direct_num_workers=N
--direct_running_mode=multi_processing spreads input FILES over N processes.

Flags can come from a file, one per line (`#` starts a comment line):
  python -m preprocess.run @configs/data/tweets_binary.args --input=... --output_dir=...
"""
import argparse
import sys

from apache_beam.options import pipeline_options

from bertcore import beam_jobs
from bertcore import cli
from bertcore import names
from bertcore import tokenization
from bertcore import windows
from preprocess import job
from preprocess import rows
from preprocess import settings as settings_lib
from preprocess import stats


DEFAULT_TRAIN_FRACTION = 0.8


class _ArgumentParser(argparse.ArgumentParser):
  """Reads @flag files one flag per line, skipping blank and `#` comment lines."""

  def convert_arg_line_to_args(self, arg_line):
    line = arg_line.strip()
    return [] if not line or line.startswith("#") else [line]


def train_fraction_of(args):
  """The share of --input rows that goes to train: the flag's, or with --test_input (where
  --input holds train and validation only) 1 - --validation_fraction."""
  if not args.test_input:
    return DEFAULT_TRAIN_FRACTION if args.train_fraction is None else args.train_fraction
  if args.train_fraction is not None:
    raise ValueError("--train_fraction does not apply with --test_input: --input rows not in "
                     "validation (--validation_fraction) are all train")
  return 1.0 - args.validation_fraction


def make_parser():
  rows_default = rows.RowConfig()  # The row checks' own defaults, declared there once.
  p = _ArgumentParser(prog="python -m preprocess.run", fromfile_prefix_chars="@",
                      description=__doc__.split("\n\n")[1], allow_abbrev=False)
  p.add_argument("--input", action="append", required=True,
                 help="CSV file or glob (local or gs://; .gz is read as gzip); repeatable")
  p.add_argument("--test_input", action="append", default=[],
                 help="CSV file or glob whose rows all go to the test split; repeatable. With it, "
                      "--input rows go to validation (--validation_fraction of them) and train "
                      "(the rest); a training row repeating a test row's id is rejected as "
                      "duplicate_id")
  p.add_argument("--output_dir", required=True)
  cli.add_shared_flags(p, cli.CSV_FLAGS)
  p.add_argument("--label_column", default="target", help="'' = unlabeled input")
  p.add_argument("--labels", default="",
                 help="comma-separated class names, in label-id order; default: the sorted "
                      "distinct labels found")
  p.add_argument("--label_map", default="",
                 help="raw:class pairs, e.g. positive:positive,negative:rest,neutral:rest; "
                      "raw values not listed are unknown_label")
  p.add_argument("--multi_label", type=cli.parse_bool, default=rows_default.multi_label,
                 help="label cells hold several labels separated by --label_separator")
  p.add_argument("--label_separator", default=rows_default.label_separator)
  vocab = p.add_mutually_exclusive_group()
  vocab.add_argument("--vocab_file", default=None)
  vocab.add_argument("--encoder_dir", default=None,
                     help="a converted checkpoint dir (bert_config.json + vocab.txt)")
  vocab.add_argument("--bert_handle", default=None, help="a TF-Hub handle or SavedModel dir")
  p.add_argument("--lower_case", default="auto", choices=("auto", "true", "false"),
                 help="auto: from the model (a bare --vocab_file means true)")
  p.add_argument("--max_seq_length", type=int, default=128,
                 help="ids per record ([CLS] and [SEP] included); with --max_chunks, per window")
  cli.add_shared_flags(p, ["truncation"])
  p.add_argument("--max_chunks", type=int, default=0,
                 help="0: truncate texts to --max_seq_length. K >= 1: keep each document whole "
                      "up to the word pieces K windows of --max_seq_length ids read (longer "
                      "ones are cut by --truncation and counted); the trainer and the export "
                      "cut the windows. Single texts only (docs/data.md 'Long documents')")
  p.add_argument("--chunk_overlap", type=int, default=32,
                 help="with --max_chunks: word pieces shared by consecutive windows")
  p.add_argument("--max_text_chars", type=int, default=rows_default.max_text_chars,
                 help="longer texts are cut to this many characters before tokenizing and "
                      "counted as long_text")
  p.add_argument("--num_shards", type=int, default=16, help="shards per split")
  p.add_argument("--train_fraction", type=float, default=None,
                 help=f"default {DEFAULT_TRAIN_FRACTION}; not with --test_input")
  p.add_argument("--validation_fraction", type=float, default=0.1,
                 help="the rest is test; the tutorial's split: --train_fraction=0.1 "
                      "--validation_fraction=0.009")
  p.add_argument("--split_salt", default="bert-tf-finetune",
                 help="changes which examples land in which split")
  p.add_argument("--compression", default="none", choices=("none", "gzip"))
  p.add_argument("--batch_size", type=int, default=512,
                 help="rows per tokenizer call (does not change the output)")
  cli.add_shared_flags(p, ["wandb_project"])
  return p


def parse_label_map(text):
  if not text:
    return None
  mapping = {}
  for pair in text.split(","):
    raw, sep, name = pair.rpartition(":")
    if not sep or not raw.strip() or not name.strip():
      raise ValueError(f"--label_map entries look like raw:class, got {pair!r}")
    mapping[raw.strip()] = name.strip()
  return mapping


def make_settings(args):
  """Parsed flags -> the job's settings_lib.Settings (ValueError for inconsistent flags)."""
  sources = {"vocab_file": args.vocab_file, "encoder_dir": args.encoder_dir,
             "hub_handle": args.bert_handle}
  if not any(sources.values()):
    raise ValueError("give the model's vocabulary: --vocab_file, --encoder_dir or --bert_handle")
  vocab_path, lower_case = tokenization.resolve_vocab(**sources)
  if args.lower_case != "auto":
    lower_case = args.lower_case == "true"
  label_map = parse_label_map(args.label_map)
  labels = [name.strip() for name in args.labels.split(",") if name.strip()] or None
  if labels is None and label_map is not None:
    labels = sorted(set(label_map.values()))
  if labels is not None and len(set(labels)) != len(labels):
    raise ValueError(f"--labels has a repeated name: {args.labels}")
  if label_map is not None and labels is not None:
    missing = sorted(set(label_map.values()) - set(labels))
    if missing:
      raise ValueError(f"--label_map maps to {missing}, which --labels does not list")
  if not args.label_column:
    if labels or label_map:
      raise ValueError("--labels / --label_map need a --label_column")
    labels = []
  columns = rows.Columns(id=args.id_column or None, text=args.text_column,
                         text_pair=args.text_pair_column or None,
                         label=args.label_column or None)
  row_config = rows.RowConfig(
      labels=frozenset(labels) if labels else None, label_map=label_map,
      multi_label=args.multi_label, label_separator=args.label_separator,
      max_text_chars=args.max_text_chars,
      unescape_html=bool(args.unescape_html))  # unset: false (the data as it is)
  # 0 = off; a negative count is refused by job.check_settings, with the flag's name.
  chunking = (windows.Geometry(args.max_seq_length, args.chunk_overlap, args.max_chunks)
              if args.max_chunks else None)
  return settings_lib.Settings(
      input_patterns=tuple(args.input), test_input_patterns=tuple(args.test_input),
      delimiter=cli.parse_delimiter(args.delimiter),
      output_dir=args.output_dir.rstrip("/"), encoding=args.encoding,
      columns=columns, row_config=row_config,
      labels=tuple(labels) if labels is not None else None, vocab_path=vocab_path,
      lower_case=lower_case, max_seq_length=args.max_seq_length, truncation=args.truncation,
      chunking=chunking,
      num_shards=args.num_shards,
      train_fraction=train_fraction_of(args), validation_fraction=args.validation_fraction,
      split_salt=args.split_salt, compression="GZIP" if args.compression == "gzip" else None,
      batch_size=args.batch_size, wandb_project=args.wandb_project or None)


def parse_settings(argv=None):
  """argv -> (Settings, Beam's flags): our flags parsed once (Beam's known_args) into the
  job's settings; ValueError (one line) for unknown or inconsistent flags."""
  known_args, pipeline_args = make_parser().parse_known_args(argv)
  unknown = beam_jobs.unknown_beam_args(pipeline_args)
  if unknown:
    raise ValueError(f"unknown flag(s) {' '.join(unknown)} (see --help)")
  return make_settings(known_args), pipeline_args


def run(argv=None):
  """Parses flags (ours + Beam's, as Beam's examples do) and runs the job; returns its Manifest."""
  settings, pipeline_args = parse_settings(argv)
  return job.run_job(settings, pipeline_options.PipelineOptions(pipeline_args))


def format_label_counts(manifest):
  """e.g. `{0: 120, 1: 80, 7: 1}` (rows per label over all splits); `none` for unlabeled data."""
  counts = stats.label_counts(manifest)
  if not counts:
    return "none"
  return "{" + ", ".join(f"{name}: {count}" for name, count in counts.items()) + "}"


def main(argv=None):
  try:
    manifest = run(argv)
  except (ValueError, OSError) as e:  # DataError is a ValueError.
    sys.exit(f"error: {e}")
  except Exception as e:  # pylint: disable=broad-except
    import tensorflow as tf
    if isinstance(e, tf.errors.OpError):  # e.g. an unreadable vocab or output dir.
      sys.exit(f"error: {cli.error_line(e)}")
    raise
  m = manifest
  split_rows = ", ".join(f"{s}={info.rows}" for s, info in m.splits.items())
  print(f"preprocess: {m.rows_read} rows read, {m.rows_written} written ({split_rows}), "
        f"{m.rows_rejected_total} rejected {m.rows_rejected}; labels {format_label_counts(m)}; "
        f"{stats.truncation_summary(m)}; "
        f"{stats.windows_summary(m) + '; ' if m.chunking else ''}"
        f"{names.MANIFEST_FILE}, {m.dead_letter_file} and plots/ are in "
        f"{make_parser().parse_known_args(argv)[0].output_dir}")


if __name__ == "__main__":
  main()
