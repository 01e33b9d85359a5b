"""Documents longer than the window, read as overlapping windows (issue 38).

A chunked data directory stores each document's word pieces once, as an ordinary record
([CLS] pieces [SEP], bertcore.schema), capped at the pieces that `max_chunks` windows cover.
The trainer's input pipeline and the export cut the windows from those ids with `cut` below,
so the training data, the Beam scoring path and the export's raw-text signatures see the same
windows, and the window length and overlap can change without re-preprocessing.

Geometry (`Geometry`): a window holds `chunk_length` ids, [CLS] + up to chunk_length - 2
pieces + [SEP]; consecutive windows share `chunk_overlap` pieces, so window i starts at piece
i * step with step = chunk_length - 2 - chunk_overlap. A document of n pieces gets
1 + ceil((n - window_pieces) / step) windows (one when n fits; an empty text keeps its one
[CLS] [SEP] window), at most max_chunks: `max_pieces` pieces in all.
"""
import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Geometry:
  """How documents are cut into windows; `check` says in one line what does not fit."""
  chunk_length: int    # ids per window, [CLS] and [SEP] included
  chunk_overlap: int   # word pieces shared by consecutive windows
  max_chunks: int      # windows per document at most

  @property
  def window_pieces(self):
    return self.chunk_length - 2

  @property
  def step(self):
    return self.window_pieces - self.chunk_overlap

  @property
  def max_pieces(self):
    """Word pieces of a document that max_chunks windows read; the rest are cut."""
    return self.window_pieces + (self.max_chunks - 1) * self.step

  def num_windows(self, pieces):
    """Windows a document of `pieces` word pieces is read in (Python ints; for statistics)."""
    if pieces <= self.window_pieces:
      return 1
    return min(self.max_chunks, 1 + math.ceil((pieces - self.window_pieces) / self.step))

  def check(self, max_positions=None, prefix=""):
    """ValueError (one line) for a geometry that cannot be cut or does not fit the encoder.

    prefix: what the fields are called where they were set, e.g. "--config.model.".
    """
    if self.max_chunks < 1:
      raise ValueError(f"{prefix}max_chunks must be at least 1, got {self.max_chunks}")
    if self.chunk_length < 3:
      raise ValueError(f"{prefix}chunk_length must be at least 3 ([CLS] a piece [SEP]), got "
                       f"{self.chunk_length}")
    if not 0 <= self.chunk_overlap < self.window_pieces:
      raise ValueError(f"{prefix}chunk_overlap must be in [0, chunk_length - 2 = "
                       f"{self.window_pieces}), got {self.chunk_overlap}")
    if max_positions is not None and self.chunk_length > max_positions:
      raise ValueError(f"{prefix}chunk_length {self.chunk_length} exceeds the encoder's "
                       f"{max_positions} positions")
    return self

  def to_json(self):
    return dict(dataclasses.asdict(self), max_pieces=self.max_pieces)

  @classmethod
  def from_json(cls, data):
    return cls(int(data["chunk_length"]), int(data["chunk_overlap"]), int(data["max_chunks"]))


def cut(input_ids, geometry):
  """Documents' ids -> their windows, in-graph (tf.data, tf.function, a SavedModel).

  Args:
    input_ids: RaggedTensor int [batch, (n >= 1)], each row [CLS] pieces [SEP] (a record's ids,
      or TextEncoder.encode's output for one segment). Pieces past geometry.max_pieces are cut.
    geometry: a Geometry.
  Returns:
    RaggedTensor of input_ids' dtype [batch, (windows), (<= chunk_length)]: every window
    starts with its row's first id ([CLS]) and ends with its last ([SEP]); every document has
    at least one window.
  """
  pieces = input_ids[:, 1:-1]                                   # drop [CLS] ... [SEP]
  n = tf.minimum(pieces.row_lengths(), geometry.max_pieces)     # int64 [batch]
  w, step = geometry.window_pieces, geometry.step
  # 1 + ceil((n - w) / step) for n > w, else 1 (integer arithmetic, exact).
  windows = 1 + tf.maximum(n - w + step - 1, 0) // step         # int64 [batch]
  windows = tf.minimum(windows, geometry.max_chunks)
  starts = tf.ragged.range(windows) * step                      # [batch, (windows)]
  ends = tf.minimum(starts + w, tf.expand_dims(n, 1))
  # Flat indices into pieces.flat_values of every kept piece of every window.
  offset = tf.expand_dims(pieces.row_starts(), 1)
  index = tf.ragged.range((starts + offset).flat_values, (ends + offset).flat_values)
  body = tf.gather(pieces.flat_values, index)                   # [windows in batch, (len)]
  ids = input_ids.flat_values
  first = tf.repeat(tf.gather(ids, input_ids.row_starts()), windows)[:, None]
  last = tf.repeat(tf.gather(ids, input_ids.row_limits() - 1), windows)[:, None]
  with_special = tf.concat([first, body, last], axis=1)
  return tf.RaggedTensor.from_row_lengths(with_special, windows)
