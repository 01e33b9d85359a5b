"""bertcore.tokenization.TextEncoder: the exact word pieces each truncation strategy keeps.

The vocabulary is one letter per word piece, so a text "a b c ..." has one piece per letter and
the kept pieces read back as letters.
"""
import string

import pytest

from bertcore import tokenization

import tensorflow as tf

LETTERS = list(string.ascii_lowercase)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + LETTERS


def letters(n, start=0):
  """The text of n one-piece words: 'a b c ...' (from the start-th letter)."""
  return " ".join(LETTERS[start:start + n])


def encode(truncation, max_seq_length, texts, pairs=None):
  """TextEncoder.encode -> (one string of tokens per row, type ids, pieces before truncation)."""
  encoder = tokenization.TextEncoder(VOCAB, True, max_seq_length, truncation)
  ids, types, num_pieces = encoder.encode(tf.constant(texts),
                                          None if pairs is None else tf.constant(pairs))
  rows = [" ".join(VOCAB[i] for i in row) for row in ids.to_list()]
  return rows, types.to_list(), num_pieces.numpy().tolist()


@pytest.mark.parametrize("truncation,kept", [
    ("head", "a b c d e f g h"),          # the first 8 (budget 10 - [CLS] - [SEP])
    ("tail", "m n o p q r s t"),          # the last 8
    ("head_tail", "a b o p q r s t"),     # the first 8 // 4 = 2, the last 6
])
def test_single_text_over_the_budget(truncation, kept):
  rows, types, num_pieces = encode(truncation, 10, [letters(20)])
  assert rows == [f"[CLS] {kept} [SEP]"]
  assert types == [[0] * 10] and num_pieces == [20]


@pytest.mark.parametrize("truncation,kept", [
    ("head", "a b c d e f g h"),
    ("tail", "b c d e f g h i"),
    ("head_tail", "a b d e f g h i"),
])
def test_exact_budget_is_unchanged_and_one_more_piece_is_cut(truncation, kept):
  rows, _, num_pieces = encode(truncation, 10, [letters(8), letters(9), letters(3)])
  assert rows == [f"[CLS] {letters(8)} [SEP]", f"[CLS] {kept} [SEP]",
                  f"[CLS] {letters(3)} [SEP]"]
  assert num_pieces == [8, 9, 3]


def test_head_tail_follows_sun_et_al_at_512():
  # 510 pieces of budget: the first 127 (510 // 4) and the last 383.
  pieces = tf.RaggedTensor.from_row_lengths(tf.range(2000, dtype=tf.int64), [2000])
  kept = tokenization.truncate(pieces, tf.constant([510], tf.int64), "head_tail")
  assert kept.to_list() == [list(range(127)) + list(range(2000 - 383, 2000))]


@pytest.mark.parametrize("truncation", ["head", "tail", "head_tail"])
def test_truncate_keeps_the_count_and_the_order(truncation):
  pieces = tf.ragged.constant([[10, 11, 12, 13, 14, 15, 16, 17, 18], [20, 21], []], tf.int64)
  kept = tokenization.truncate(pieces, tf.constant([5, 2, 0], tf.int64), truncation).to_list()
  first = {"head": [10, 11, 12, 13, 14], "tail": [14, 15, 16, 17, 18],
           "head_tail": [10, 15, 16, 17, 18]}[truncation]  # 5 // 4 = 1 from the head
  assert kept == [first, [20, 21], []]


@pytest.mark.parametrize("truncation,kept_a,kept_b", [
    # Budget 10 - 3 = 7; RoundRobinTrimmer gives a (20 pieces) 4 and b (10 pieces) 3.
    ("head", "a b c d", "a b c"),
    ("tail", "q r s t", "h i j"),
    ("head_tail", "a r s t", "h i j"),  # 4 // 4 = 1 head piece; 3 // 4 = 0
])
def test_pair_budget_split_round_robin_then_each_segment_cut(truncation, kept_a, kept_b):
  rows, types, num_pieces = encode(truncation, 10, [letters(20), letters(2)],
                                   [letters(10), letters(20)])
  assert rows[0] == f"[CLS] {kept_a} [SEP] {kept_b} [SEP]"
  assert types[0] == [0] * 6 + [1] * 4
  # A short first segment keeps all its pieces; the second gets the rest of the budget (5).
  kept_second = {"head": "a b c d e", "tail": "p q r s t", "head_tail": "a q r s t"}[truncation]
  assert rows[1] == f"[CLS] a b [SEP] {kept_second} [SEP]"
  assert num_pieces == [30, 22]


@pytest.mark.parametrize("truncation", ["head", "tail", "head_tail"])
def test_empty_after_truncation(truncation):
  # An empty text stays [CLS] [SEP] (preprocessing rejects it as empty_text).
  rows, _, num_pieces = encode(truncation, 10, ["", letters(20)])
  assert rows[0] == "[CLS] [SEP]" and num_pieces == [0, 20]
  # Budget 1: head_tail's head part is 1 // 4 = 0 pieces, so it keeps the last one, as tail.
  rows, _, _ = encode(truncation, 3, [letters(5)])
  assert rows == [{"head": "[CLS] a [SEP]", "tail": "[CLS] e [SEP]",
                   "head_tail": "[CLS] e [SEP]"}[truncation]]
  # A pair with max_seq_length 3 has no budget at all: both segments are emptied.
  rows, types, _ = encode(truncation, 3, [letters(5)], [letters(2)])
  assert rows == ["[CLS] [SEP] [SEP]"] and types == [[0, 0, 1]]


@pytest.mark.parametrize("truncation", ["tail", "head_tail"])
def test_same_in_a_traced_function(truncation):
  encoder = tokenization.TextEncoder(VOCAB, True, 10, truncation)
  spec = tf.TensorSpec([None], tf.string)
  traced = tf.function(encoder.encode, input_signature=[spec, spec], autograph=False)
  texts, pairs = tf.constant([letters(20), "", letters(3)]), tf.constant([letters(9), "b", ""])
  got_ids, got_types, got_pieces = traced(texts, pairs)
  ids, types, num_pieces = encoder.encode(texts, pairs)
  assert got_ids.to_list() == ids.to_list() and got_types.to_list() == types.to_list()
  assert got_pieces.numpy().tolist() == num_pieces.numpy().tolist() == [29, 1, 3]
  assert [len(row) for row in ids.to_list()] == [10, 4, 6]  # an empty pair keeps its [SEP]


def test_unknown_truncation_is_one_line():
  with pytest.raises(ValueError, match=r"^truncation must be one of head, tail, head_tail, "
                                       r"got 'middle'$"):
    tokenization.TextEncoder(VOCAB, True, 10, "middle")
