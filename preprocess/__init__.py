"""Tokenizes a labelled CSV into sharded TFRecords with Apache Beam."""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
