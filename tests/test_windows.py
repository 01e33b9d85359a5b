"""bertcore/windows.py: the window geometry and the in-graph cut, on exact ids."""
import pytest
import tensorflow as tf

from bertcore import windows

CLS, SEP = 101, 102


def document(pieces):
  """A record's ids: [CLS] 1 2 ... pieces [SEP] (piece i has id i, so windows are readable)."""
  return [CLS] + list(range(1, pieces + 1)) + [SEP]


def cut(documents, geometry, dtype=tf.int64):
  ids = tf.ragged.constant(documents, dtype=dtype)
  return windows.cut(ids, geometry).to_list()


def reference(pieces, g):
  """The windows of a document of `pieces` pieces, by the module docstring's definition."""
  n = min(pieces, g.max_pieces)
  return [[CLS] + list(range(1, n + 1))[i * g.step:i * g.step + g.window_pieces] + [SEP]
          for i in range(g.num_windows(pieces))]


# Windows of 8 ids (6 pieces), overlap 2 (step 4), at most 3: 6 + 2 * 4 = 14 pieces.
G = windows.Geometry(chunk_length=8, chunk_overlap=2, max_chunks=3)


def test_geometry():
  assert (G.window_pieces, G.step, G.max_pieces) == (6, 4, 14)
  assert [G.num_windows(n) for n in (0, 1, 6, 7, 10, 11, 14, 15, 1000)] == [
      1, 1, 1, 2, 2, 3, 3, 3, 3]
  assert G.to_json() == {"chunk_length": 8, "chunk_overlap": 2, "max_chunks": 3,
                         "max_pieces": 14}
  assert windows.Geometry.from_json(G.to_json()) == G
  assert windows.Geometry(512, 0, 1).max_pieces == 510  # one window: truncation at 512


def test_empty_text_keeps_one_empty_window():
  assert cut([document(0)], G) == [[[CLS, SEP]]]


def test_exactly_one_window():
  assert cut([document(6)], G) == [[[CLS, 1, 2, 3, 4, 5, 6, SEP]]]


def test_one_piece_over_one_window_opens_a_second():
  assert cut([document(7)], G) == [[[CLS, 1, 2, 3, 4, 5, 6, SEP], [CLS, 5, 6, 7, SEP]]]


def test_exact_multiples_of_the_step_end_on_a_full_window():
  # 6 + 4 = 10 pieces: two full windows, the second ends on the last piece.
  assert cut([document(10)], G) == [[[CLS, 1, 2, 3, 4, 5, 6, SEP],
                                     [CLS, 5, 6, 7, 8, 9, 10, SEP]]]
  assert cut([document(14)], G)[0][-1] == [CLS, 9, 10, 11, 12, 13, 14, SEP]


def test_the_cap_cuts_pieces_past_max_chunks_windows():
  # 10x the window: 3 windows reading pieces 1..14; 15..80 are cut.
  assert cut([document(80)], G) == [[[CLS, 1, 2, 3, 4, 5, 6, SEP],
                                     [CLS, 5, 6, 7, 8, 9, 10, SEP],
                                     [CLS, 9, 10, 11, 12, 13, 14, SEP]]]


def test_a_batch_of_mixed_lengths_matches_the_definition():
  lengths = [0, 80, 1, 6, 7, 9, 10, 11, 13, 14, 15, 3]
  for g in (G, windows.Geometry(5, 0, 4), windows.Geometry(6, 3, 2), windows.Geometry(3, 0, 5)):
    got = cut([document(n) for n in lengths], g)
    assert got == [reference(n, g) for n in lengths], g
    assert [len(w) for w in got] == [g.num_windows(n) for n in lengths]


def test_dtype_is_kept_and_it_runs_in_a_traced_function():
  assert cut([document(7)], G, dtype=tf.int32) == cut([document(7)], G)
  fn = tf.function(lambda ids: windows.cut(ids, G),
                   input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)])
  out = fn(tf.ragged.constant([document(11), document(2)], dtype=tf.int32))
  assert out.dtype == tf.int32
  assert out.to_list() == [reference(11, G), reference(2, G)]


@pytest.mark.parametrize("geometry,message", [
    (windows.Geometry(8, 2, 0), "max_chunks must be at least 1, got 0"),
    (windows.Geometry(2, 0, 1), "chunk_length must be at least 3"),
    (windows.Geometry(8, 6, 2), r"chunk_overlap must be in \[0, chunk_length - 2 = 6\), got 6"),
    (windows.Geometry(8, -1, 2), "got -1"),
])
def test_check_refuses_a_geometry_that_cannot_be_cut(geometry, message):
  with pytest.raises(ValueError, match=message):
    geometry.check()


def test_check_refuses_a_window_over_the_encoders_positions():
  with pytest.raises(ValueError, match="chunk_length 600 exceeds the encoder's 512 positions"):
    windows.Geometry(600, 32, 2).check(max_positions=512)
  assert windows.Geometry(512, 32, 2).check(max_positions=512).chunk_length == 512
