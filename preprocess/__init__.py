"""Tokenizes a labelled CSV into sharded TFRecords with Apache Beam."""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
from bertcore import env

# Imported here, before any preprocess module, so Beam's import-time notes about missing cloud
# extras stay quiet (see env.quiet_optional_imports).
with env.quiet_optional_imports():
  import apache_beam  # noqa: F401
