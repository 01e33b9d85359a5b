"""`python -m trainer.predict`: the former name of `python -m serving.predict`, kept for the
scripts that call it; same flags, output, errors and exit codes.

Prediction needs only serving/ and bertcore/, so it lives in serving/predict.py; code that
imported this module (predict_csv, CHUNK_BATCHES, ...) finds the same names here.
"""
from absl import app
from absl import flags

from bertcore import cli
from serving import predict as serving_predict
from serving.predict import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import

# --help lists the flags of the main module: this one, so adopt serving.predict's.
flags.adopt_module_key_flags(serving_predict)

if __name__ == "__main__":
  app.run(serving_predict.main, flags_parser=cli.parse_flags)
