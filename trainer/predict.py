"""`python -m trainer.predict`: the former name of `python -m serving.predict`, kept for the
scripts that call it; same flags, output, errors and exit codes.

Prediction needs only serving/ and bertcore/, so it lives in serving/predict.py.
"""
from absl import app
from absl import flags

from bertcore import cli
from serving import predict
from serving.predict import predict_csv  # noqa: F401  (the former import path)

# --help lists the flags of the main module: this one, so adopt serving.predict's.
flags.adopt_module_key_flags(predict)

if __name__ == "__main__":
  app.run(predict.main, flags_parser=cli.parse_flags)
