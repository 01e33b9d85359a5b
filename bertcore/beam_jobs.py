"""What every Beam job of the package (preprocess.run, scoring.run) does the same way.

  unknown_beam_args(args)          flags neither the job nor Beam knows (typos), to refuse
  make_runner(options)             the runner, never attempting Beam's Prism download
  run_pipeline(build, config, options)   builds and runs a pipeline to completion
"""
import gc

from bertcore import env
from bertcore import private_apis

with env.quiet_optional_imports():  # Beam logs its missing cloud extras on import.
  import apache_beam as beam
  from apache_beam.options import pipeline_options

LOCAL_RUNNERS = (None, "DirectRunner", "direct", "FnApiRunner")


def unknown_beam_args(pipeline_args):
  """The flags that neither this job nor any Beam PipelineOptions knows (likely typos).

  Beam keeps flags it does not know only when asked to (retain_unknown_options=True); the
  option names that appear then, and not among the defaults, are the unknown ones.
  """
  known = pipeline_options.PipelineOptions([]).get_all_options()
  retained = pipeline_options.PipelineOptions(pipeline_args).get_all_options(
      retain_unknown_options=True)
  unknown = set(retained) - set(known)
  return [arg for arg in pipeline_args if arg.startswith("-")
          and arg.lstrip("-").partition("=")[0].replace("-", "_") in unknown]


def make_runner(options):
  """The runner for these options, never attempting Beam's Prism download.

  Beam 2.77's DirectRunner first tries the Prism runner, which downloads a binary; for a batch
  pipeline like ours it then falls back to the FnApiRunner, which we build directly (see
  bertcore.private_apis). Any other runner name (DataflowRunner, ...) is returned as is for
  Beam to resolve.
  """
  name = options.view_as(pipeline_options.StandardOptions).runner
  if name not in LOCAL_RUNNERS:
    return name
  return private_apis.local_beam_runner(options)


def run_pipeline(build, config, options):
  """Runs the Beam pipeline that build(pipeline, config) adds steps to, to completion."""
  # The local runner works in this process: keep the cyclic GC from re-scanning the millions of
  # long-lived objects of TensorFlow and Beam on every full collection (unfrozen afterwards).
  gc.freeze()
  try:
    with beam.Pipeline(runner=make_runner(options), options=options) as p:
      build(p, config)
  finally:
    gc.unfreeze()
