"""The preprocessing job's settings: built once from the flags by preprocess.run, read by the job
(preprocess/job.py) and, inside the pipeline's Plan, by the transforms (preprocess/pipeline.py).

Frozen and picklable: it travels to remote workers. Every default is the flag's (preprocess.run's
parser, bertcore.cli.SHARED_FLAGS); nothing here has one.
"""
import dataclasses
from typing import Optional, Tuple

from bertcore import windows
from preprocess import rows


@dataclasses.dataclass(frozen=True)
class Settings:
  input_patterns: Tuple[str, ...]       # --input
  # --test_input: all their rows go to test, and the rows of input_patterns to train and
  # validation only (train_fraction = 1 - validation_fraction).
  test_input_patterns: Tuple[str, ...]
  output_dir: str                       # without a trailing "/"
  encoding: str
  delimiter: str                        # one character (cli.parse_delimiter)
  columns: rows.Columns
  row_config: rows.RowConfig            # validation: labels, label_map, unescape_html, ...
  # The class names in label-id order: fixed by --labels / --label_map, () for unlabeled input,
  # None to discover them (the sorted labels of the valid rows).
  labels: Optional[Tuple[str, ...]]
  vocab_path: str                       # from --vocab_file, --encoder_dir or --bert_handle
  lower_case: bool
  max_seq_length: int                   # the model's input length; with chunking, the window's
  truncation: str                       # names.TRUNCATIONS: which word pieces a long text keeps
  # --max_chunks: None = texts truncated to max_seq_length; else each document is stored once,
  # capped at the word pieces its windows read (windows.Geometry.max_pieces).
  chunking: Optional[windows.Geometry]
  num_shards: int                       # per split
  train_fraction: float
  validation_fraction: float
  split_salt: str
  compression: Optional[str]            # None or "GZIP"
  batch_size: int                       # rows per tokenizer call
  wandb_project: Optional[str]

  @property
  def record_length(self):
    """The most ids a record holds, [CLS] and [SEP]s included: what --truncation cuts to."""
    if self.chunking is None:
      return self.max_seq_length
    return self.chunking.max_pieces + 2
