"""What serving an export needs, shared by serving.predict (one process) and scoring.run (Beam).

  predict       `python -m serving.predict`: a CSV's predictions in one process (settings ->
                predict)
  export_info   an export's metadata and checks, the word-piece counter over its vocabulary
  inputs        the CSV/TSV row reader: bertcore.csv_source + bertcore.row_checks (the reject
                reasons preprocessing uses), duplicate ids, row numbers
  inference     loading an export and calling its signatures on a batch
  outputs       the output columns, cells, CSV / JSON-lines encoding, the complete-or-nothing file

Needs TensorFlow, tensorflow-text and Beam's FileSystems; never Model Garden or Keras (a scoring
worker imports this, not trainer/).
"""
import bertcore  # noqa: F401  (selects Keras 2 and checks versions before TensorFlow loads)
from bertcore import env

# Beam's import-time notes about missing cloud extras stay quiet (env.quiet_optional_imports).
with env.quiet_optional_imports():
  import apache_beam  # noqa: F401
