r"""Entry point: `python -m scoring.run --model=<export> --input=test.csv --output_dir=<dir>`.

Scores CSV files with a model exported by trainer.export, as a Beam job: rows -> Beam's
RunInference (the model loaded once per worker, batches from BatchElements, rows sorted by
length within blocks) -> sharded predictions (CSV or JSON lines, the columns of
trainer.predict: id, label, probability column(s), error) + manifest.json. Rows that cannot be
scored get a row with the reason in `error` (missing_field, extra_fields, empty_text,
empty_text_pair, malformed_csv, undecodable); none is dropped.

Flags not defined here are Beam pipeline options. --runner=DirectRunner (the default) runs
locally on Beam's FnApiRunner without the Prism download; --direct_num_workers=2
--direct_running_mode=multi_processing scores the parts on 2 processes. On Dataflow:
`python -m launch.submit dataflow --job=score ... -- --model=gs://... --input=gs://...
--output_dir=gs://...` (adds --setup_file, which installs tensorflow-text on the workers).

For a small file on one machine, `python -m trainer.predict` is simpler and starts faster.
"""
import argparse
import sys

from apache_beam.options import pipeline_options

from bertcore import cli
from preprocess import run as preprocess_run
from scoring import job
from scoring import pipeline as pipeline_lib


def make_parser():
  p = argparse.ArgumentParser(prog="python -m scoring.run", allow_abbrev=False,
                              description=__doc__.split("\n\n")[1])
  p.add_argument("--model", required=True, help="export directory written by trainer.export")
  p.add_argument("--input", action="append", required=True,
                 help="CSV file or glob (local or gs://; .gz is read as gzip); repeatable")
  p.add_argument("--output_dir", required=True)
  p.add_argument("--id_column", default="qid", help="'' = number the rows (column `row`)")
  p.add_argument("--text_column", default="question_text")
  p.add_argument("--text_pair_column", default="", help="second text, for text-pair models")
  p.add_argument("--encoding", default="utf-8", help="e.g. latin-1; a UTF-8 BOM is skipped")
  p.add_argument("--delimiter", default=",",
                 help="the field separator: one character, or tab / \\t for TSV")
  p.add_argument("--unescape_html", type=preprocess_run.parse_bool, default=None,
                 help="decode HTML character references in the texts (true/false); default: "
                      "as the training data (recorded in the export)")
  p.add_argument("--output_format", default="csv", choices=pipeline_lib.FORMATS)
  p.add_argument("--num_shards", type=int, default=8,
                 help="output shards per input file; also the units of parallelism")
  p.add_argument("--sort_rows", type=int, default=2048,
                 help="rows sorted by length together before batching (a block)")
  p.add_argument("--batch_size", type=int, default=256, help="rows per model call")
  p.add_argument("--large_model", action="store_true",
                 help="one model copy per machine, shared by its worker processes")
  p.add_argument("--model_threads", type=int, default=0,
                 help="TensorFlow threads per worker process (0: TensorFlow's default, all "
                      "cores); e.g. 1 with --direct_num_workers equal to the cores")
  p.add_argument("--wandb_project", default="",
                 help="log counts and the label distribution to this W&B project")
  return p


def run(argv=None):
  """Parses flags (ours + Beam's) and runs the job; returns the manifest."""
  args, pipeline_args = make_parser().parse_known_args(argv)
  unknown = preprocess_run.unknown_beam_args(pipeline_args)
  if unknown:
    raise ValueError(f"unknown flag(s) {' '.join(unknown)} (see --help)")
  columns = pipeline_lib.Columns(id=args.id_column or None, text=args.text_column,
                                 text_pair=args.text_pair_column or None)
  return job.run_job(
      model_dir=args.model.rstrip("/"), input_patterns=args.input, output_dir=args.output_dir,
      columns=columns, encoding=args.encoding, output_format=args.output_format,
      num_shards=args.num_shards, sort_rows=args.sort_rows, batch_size=args.batch_size,
      large_model=args.large_model, model_threads=args.model_threads,
      options=pipeline_options.PipelineOptions(pipeline_args),
      wandb_project=args.wandb_project or None,
      delimiter=cli.parse_delimiter(args.delimiter), unescape_html=args.unescape_html)


def main(argv=None):
  try:
    manifest = run(argv)
  except (ValueError, OSError) as e:
    sys.exit(f"error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
  except Exception as e:  # pylint: disable=broad-except
    import tensorflow as tf
    if isinstance(e, tf.errors.OpError):
      sys.exit(f"error: {e.message.strip().splitlines()[0]}")
    raise
  print(f"score: {manifest['rows_read']} rows read, {manifest['rows_scored']} scored, "
        f"{manifest['rows_rejected_total']} with an error {manifest['rows_rejected']}; "
        f"labels {manifest['label_histogram']}; {len(manifest['shards'])} shards + manifest.json "
        f"in {make_parser().parse_known_args(argv)[0].output_dir}")


if __name__ == "__main__":
  main()
