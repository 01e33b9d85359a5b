"""The scoring job's settings: built once from the flags by scoring.run, read by the job
(scoring/job.py) and, inside the pipeline's Plan, by the transforms (scoring/pipeline.py).

Frozen and picklable: it travels to the workers. The fields are scoring.run's flags, normalized;
every default is the flag's (scoring.run's parser, bertcore.cli.SHARED_FLAGS).
"""
import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Settings:
  model: str                      # export directory, without a trailing "/"
  input: Tuple[str, ...]          # CSV files or globs; tfrecord: data directories or globs
  output_dir: str                 # without a trailing "/"
  id_column: str                  # "" = number the rows
  text_column: str
  text_pair_column: str           # "" = single texts
  encoding: str
  delimiter: str                  # one character (cli.parse_delimiter)
  unescape_html: Optional[bool]   # None: as the training data (the export's metadata)
  output_format: str              # pipeline.FORMATS
  num_shards: int                 # output shards per input file
  sort_rows: int
  batch_size: int
  large_model: bool
  model_threads: int
  input_format: str               # pipeline.INPUT_FORMATS
  split: str                      # tfrecord input from a data directory: its split
  bfloat16: bool
  wandb_project: Optional[str]
  min_confidence: Optional[float] = None   # the confidence floor (serving.outputs); None: none
