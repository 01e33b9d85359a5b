"""Shared foundation of the package: environment, TFRecord schema, tokenization.

Importing this package (directly, or through `preprocess` / `trainer`) sets
TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, because Model Garden and
tensorflow-hub only work with Keras 2 (tf-keras), and checks that the installed
TensorFlow / tensorflow-text / tf-keras versions move in lock-step.
"""
from bertcore import env

env.configure()

__version__ = "0.1.0"
