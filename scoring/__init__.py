"""Batch scoring of an exported model as an Apache Beam job (RunInference); see scoring/run.py."""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
