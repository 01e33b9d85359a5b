"""Submits the preprocessing and training jobs to Dataflow, Vertex AI and Cloud TPU."""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
