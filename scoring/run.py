r"""Entry point: `python -m scoring.run --model=<export> --input=test.csv --output_dir=<dir>`.

Scores CSV files (or, with --input_format=tfrecord, the preprocessing job's TFRecords) with a
model exported by trainer.export, as a Beam job: rows -> Beam's
RunInference (the model loaded once per worker, batches from BatchElements, rows sorted by
length within blocks) -> sharded predictions (CSV or JSON lines, the columns of
serving.predict: id, label, probability column(s), error, and with --min_confidence the `flag`
column) + manifest.json. Rows that cannot be
scored get a row with the reason in `error`, preprocessing's reasons (malformed_csv,
undecodable, nul_character, wrong_column_count, missing_id, empty_text, duplicate_id; for
records corrupt_record, truncated_file, malformed_example, too_long); none is dropped.

Flags not defined here are Beam pipeline options. --runner=DirectRunner (the default) runs
locally on Beam's FnApiRunner without the Prism download; --direct_num_workers=2
--direct_running_mode=multi_processing scores the parts on 2 processes. On Dataflow:
`python -m launch.submit dataflow --job=score ... -- --model=gs://... --input=gs://...
--output_dir=gs://...` (adds --setup_file, which installs tensorflow-text on the workers).

For a small file on one machine, `python -m serving.predict` is simpler and starts faster.
"""
import argparse
import sys

from apache_beam.options import pipeline_options

from bertcore import beam_jobs
from bertcore import cli
from scoring import job
from scoring import pipeline as pipeline_lib
from scoring import settings as settings_lib


def make_parser():
  p = argparse.ArgumentParser(prog="python -m scoring.run", allow_abbrev=False,
                              description=__doc__.split("\n\n")[1])
  p.add_argument("--model", required=True, help="export directory written by trainer.export")
  p.add_argument("--input", action="append", required=True,
                 help="CSV file or glob (local or gs://; .gz is read as gzip), or with "
                      "--input_format=tfrecord a data directory or shard glob; repeatable")
  p.add_argument("--output_dir", required=True)
  cli.add_shared_flags(p, cli.CSV_FLAGS + cli.PREDICTION_FLAGS)
  p.add_argument("--output_format", default="csv", choices=pipeline_lib.FORMATS)
  p.add_argument("--num_shards", type=int, default=None,
                 help="output shards per input file; also the units of parallelism "
                      "(default: 8 per CSV file, 1 per TFRecord shard)")
  p.add_argument("--sort_rows", type=int, default=2048,
                 help="rows sorted by length together before batching (a block)")
  p.add_argument("--batch_size", type=int, default=64,
                 help="rows per model call (small batches of sorted rows pad little; "
                      "python -m benchmarks.bench_score measures it)")
  p.add_argument("--large_model", action="store_true",
                 help="one model copy per machine, shared by its worker processes")
  p.add_argument("--model_threads", type=int, default=0,
                 help="TensorFlow threads per worker process (0: TensorFlow's default, all "
                      "cores); e.g. 1 with --direct_num_workers equal to the cores")
  records = p.add_argument_group(
      "TFRecord input", "score the preprocessing job's records through the export's "
      "serve_examples signature; the id column is each record's example_id")
  records.add_argument("--input_format", default="csv", choices=pipeline_lib.INPUT_FORMATS,
                       help="tfrecord: --input is a data directory written by preprocess.run, "
                            "or a glob of its shards (<data_dir>/<split>/*.tfrecord)")
  records.add_argument("--split", default="test",
                       help="with --input_format=tfrecord and a data directory: its split")
  speed = p.add_argument_group("precision")
  speed.add_argument("--bfloat16", action="store_true",
                     help="serve in bfloat16 (for CPUs with native bfloat16, e.g. AVX512_BF16 "
                          "or AMX: faster; probabilities differ from float32 by ~1e-3)")
  cli.add_shared_flags(p, ["wandb_project"])
  return p


def make_settings(args):
  """Parsed flags -> the job's settings_lib.Settings, with the values that need it normalized
  (ValueError, one line, for a bad --delimiter)."""
  num_shards = args.num_shards
  if num_shards is None:
    num_shards = 1 if args.input_format == "tfrecord" else 8
  return settings_lib.Settings(**dict(
      vars(args), model=args.model.rstrip("/"), input=tuple(args.input),
      output_dir=args.output_dir.rstrip("/"), delimiter=cli.parse_delimiter(args.delimiter),
      num_shards=num_shards, wandb_project=args.wandb_project or None))


def parse_settings(argv=None):
  """argv -> (Settings, Beam's flags): our flags parsed once (Beam's known_args) into the
  job's settings; ValueError (one line) for unknown flags."""
  known_args, pipeline_args = make_parser().parse_known_args(argv)
  unknown = beam_jobs.unknown_beam_args(pipeline_args)
  if unknown:
    raise ValueError(f"unknown flag(s) {' '.join(unknown)} (see --help)")
  return make_settings(known_args), pipeline_args


def run(argv=None):
  """Parses flags (ours + Beam's) and runs the job; returns the manifest."""
  settings, pipeline_args = parse_settings(argv)
  return job.run_job(settings, pipeline_options.PipelineOptions(pipeline_args))


def main(argv=None):
  try:
    manifest = run(argv)
  except (ValueError, OSError) as e:
    sys.exit(f"error: {cli.error_line(e)}")
  except Exception as e:  # pylint: disable=broad-except
    import tensorflow as tf
    if isinstance(e, tf.errors.OpError):
      sys.exit(f"error: {e.message.strip().splitlines()[0]}")
    raise
  low = manifest["rows_low_confidence"]
  print(f"score: {manifest['rows_read']} rows read, {manifest['rows_scored']} scored"
        f"{'' if low is None else f' ({low} below --min_confidence: low_confidence)'}, "
        f"{manifest['rows_rejected_total']} with an error {manifest['rows_rejected']}; "
        f"labels {manifest['label_histogram']}; {len(manifest['shards'])} shards + manifest.json "
        f"in {make_parser().parse_known_args(argv)[0].output_dir}")


if __name__ == "__main__":
  main()
