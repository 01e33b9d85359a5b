"""BERT tokenization shared by preprocessing (batched, eager) and the exported model (in-graph).

One `TextEncoder` turns raw strings (or string pairs) into truncated WordPiece ids with [CLS] and
[SEP], so that serving tokenizes and truncates exactly as the preprocessing job did.
"""
import hashlib
import posixpath

import tensorflow as tf
import tensorflow_text as text

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


class TextEncoder(tf.Module):
  """Strings -> BERT token ids, truncated as google-research/bert does.

  Single texts keep max_seq_length - 2 word pieces ([CLS] a [SEP]); pairs keep
  max_seq_length - 3, taking from the longer segment first ([CLS] a [SEP] b [SEP]).
  """

  def __init__(self, vocab, lower_case, max_seq_length):
    super().__init__()
    if max_seq_length < 3:
      raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    self.vocab = list(vocab)
    self.lower_case = bool(lower_case)
    self.max_seq_length = int(max_seq_length)
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
    trimmed = text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    input_ids, type_ids = text.combine_segments(
        trimmed, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
    return input_ids, tf.cast(type_ids, tf.int64), num_pieces
