"""BERT tokenization shared by preprocessing (batched, eager) and the exported model (in-graph).

One `TextEncoder` turns raw strings (or string pairs) into truncated WordPiece ids with [CLS] and
[SEP], so that serving tokenizes and truncates exactly as the preprocessing job did.
"""
import hashlib
import posixpath

import tensorflow as tf
import tensorflow_text as text

from bertcore import cli
from bertcore import files
from bertcore import names

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"


def load_vocab(vocab_file):
  """Reads a BERT vocab.txt (one token per line) through tf.io.gfile."""
  with tf.io.gfile.GFile(vocab_file, "rb") as f:
    tokens = f.read().decode("utf-8").splitlines()
  missing = [t for t in (CLS, SEP, PAD, UNK) if t not in tokens]
  if missing:
    raise ValueError(f"{vocab_file} is not a BERT vocabulary: it lacks {', '.join(missing)}")
  return tokens


def vocab_sha256(tokens):
  """A hash of the vocabulary that preprocessing and training compare."""
  return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def resolve_vocab(vocab_file=None, encoder_dir=None, hub_handle=None):
  """Finds the vocabulary and lower-casing that belong to a BERT model.

  Args:
    vocab_file: a vocab.txt; lower-casing is then assumed (pass lower_case explicitly otherwise).
    encoder_dir: a converted / Model Garden checkpoint directory holding bert_config.json and
      vocab.txt (`do_lower_case` in bert_config.json, default true).
    hub_handle: a TF-Hub handle or SavedModel directory with assets/vocab.txt and a
      `do_lower_case` variable, as TF-Hub's BERT encoders have.
  Returns:
    (vocab_path, lower_case)
  """
  if sum(x is not None for x in (vocab_file, encoder_dir, hub_handle)) != 1:
    raise ValueError("give exactly one of vocab_file, encoder_dir, hub_handle")
  if vocab_file:
    return vocab_file, True
  if encoder_dir:
    config = files.read_json(posixpath.join(encoder_dir, names.BERT_CONFIG_FILE))
    return posixpath.join(encoder_dir, names.VOCAB_FILE), bool(config.get("do_lower_case", True))
  import tensorflow_hub as hub  # Only this path needs it; keep import time low elsewhere.
  path = hub.resolve(hub_handle)
  loaded = tf.saved_model.load(path)
  lower_case = bool(loaded.do_lower_case.numpy()) if hasattr(loaded, "do_lower_case") else True
  return posixpath.join(path, "assets", names.VOCAB_FILE), lower_case


def truncate(pieces, keep, truncation):
  """Keeps `keep` word pieces of each row, chosen by the truncation strategy.

  Args:
    pieces: RaggedTensor int64 [batch, (n)], one segment's word pieces.
    keep: int64[batch], how many pieces each row keeps (at most its n).
    truncation: "head": the first keep; "tail": the last keep; "head_tail": the first
      keep // 4 and the last keep - keep // 4 (127 + 383 of 510; Sun et al. 2019 kept 128 + 382).
  Returns:
    RaggedTensor int64 [batch, (keep)]; a row with keep == n is unchanged.
  """
  names.check_truncation(truncation)
  keep = tf.cast(keep, tf.int64)
  head = {"head": keep, "tail": tf.zeros_like(keep), "head_tail": keep // 4}[truncation]
  starts = pieces.row_starts()  # int64[batch]: where each row begins in flat_values
  limits = pieces.row_limits()
  # Indices of the kept pieces only (not a mask over all of them: a row may be 100x the budget).
  index = tf.concat([tf.ragged.range(starts, starts + head),
                     tf.ragged.range(limits - (keep - head), limits)], axis=1)
  return tf.gather(pieces.flat_values, index)


class TextEncoder(tf.Module):
  """Strings -> BERT token ids, truncated to max_seq_length by a strategy (names.TRUNCATIONS).

  Single texts keep B = max_seq_length - 2 word pieces ([CLS] a [SEP]): "head" (the --truncation
  flag's default, as google-research/bert) the first B, "tail" the last B, "head_tail" the first B // 4 and
  the last B - B // 4. Pairs keep B = max_seq_length - 3 ([CLS] a [SEP] b [SEP]): first
  tf_text's RoundRobinTrimmer decides how many pieces n each segment keeps (one piece to each
  segment in turn, so the shorter one keeps all of its pieces if it can), then each segment is
  cut to n by the same strategy (head_tail: its first n // 4 and its last n - n // 4). Texts
  within the budget are never changed. Pure TensorFlow ops: usable in tf.function, tf.data and
  a SavedModel.
  """

  def __init__(self, vocab, lower_case, max_seq_length,
               truncation=cli.SHARED_FLAGS["truncation"].default):
    super().__init__()
    if max_seq_length < 3:
      raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    names.check_truncation(truncation)
    self.vocab = list(vocab)
    self.lower_case = bool(lower_case)
    self.max_seq_length = int(max_seq_length)
    self.truncation = truncation
    self.cls_id = self.vocab.index(CLS)
    self.sep_id = self.vocab.index(SEP)
    self.pad_id = self.vocab.index(PAD)
    self._tokenizer = text.FastBertTokenizer(
        vocab=self.vocab, token_out_type=tf.int64,
        lower_case_nfd_strip_accents=self.lower_case)

  def word_pieces(self, texts):
    """string[batch] -> RaggedTensor int64 [batch, (pieces)], untruncated."""
    return self._tokenizer.tokenize(texts)

  def encode(self, texts, pair_texts=None):
    """Tokenizes, truncates and adds special tokens.

    Args:
      texts: string[batch].
      pair_texts: optional string[batch], the second segment.
    Returns:
      (input_ids, type_ids, num_pieces): RaggedTensors int64 [batch, (<= max_seq_length)] and
      int64[batch], the word-piece count before truncation (to count truncated rows).
    """
    segments = [self.word_pieces(texts)]
    if pair_texts is not None:
      segments.append(self.word_pieces(pair_texts))
    # Account for [CLS] and one [SEP] per segment.
    budget = self.max_seq_length - 1 - len(segments)
    num_pieces = tf.add_n([s.row_lengths() for s in segments])
    # The trimmer keeps each segment's first pieces: that is "head"; the other strategies take
    # only its per-segment counts.
    trimmed = text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    if self.truncation != "head":
      trimmed = [truncate(s, t.row_lengths(), self.truncation)
                 for s, t in zip(segments, trimmed)]
    input_ids, type_ids = text.combine_segments(
        trimmed, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
    return input_ids, tf.cast(type_ids, tf.int64), num_pieces
