"""Batch scoring of an exported model as an Apache Beam job (RunInference); see scoring/run.py.

Imports the serving layer (serving/) and Beam's helpers (bertcore.beam_jobs), never trainer/
or preprocess/: a Dataflow worker needs no Model Garden to score.
"""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
from bertcore import env

# Imported here, before any scoring module, so Beam's import-time notes about missing cloud
# extras stay quiet (see env.quiet_optional_imports).
with env.quiet_optional_imports():
  import apache_beam  # noqa: F401
