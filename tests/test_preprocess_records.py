"""The hand-written Example serialization equals TensorFlow's, byte for byte."""
import random

import pytest

from bertcore import schema
from preprocess import records


@pytest.mark.parametrize("seed", range(5))
def test_same_bytes_as_make_example(seed):
  rng = random.Random(seed)
  encoder = records.ExampleEncoder(table_size=300)
  for _ in range(50):
    n = rng.randint(1, 200)
    input_ids = [rng.choice([0, 1, 127, 128, 299, 300, 16383, 16384, 2**21, 2**40])
                 for _ in range(n)]
    type_ids = [rng.randint(0, 1) for _ in range(n)]
    label_ids = rng.choice([[], [0], [1, 3], [200]])
    example_id = rng.choice(["q1", "", "\u00e9\U0001F600", "x" * 300])
    expected = schema.make_example(example_id, input_ids, type_ids, label_ids).SerializeToString(
        deterministic=True)
    assert encoder.encode(example_id, input_ids, type_ids, label_ids) == expected


def test_varint():
  assert [records.varint(v) for v in (0, 1, 127, 128, 300)] == [
      b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02"]


def test_pack_batch_matches_per_row_packing():
  encoder = records.ExampleEncoder()
  rows = [[2, 5, 127, 128, 3], [], [16383, 16384, 2**21 - 1, 2**21, 2**28 - 1], [0]]
  flat = [v for r in rows for v in r]
  splits = [0]
  for r in rows:
    splits.append(splits[-1] + len(r))
  packed, offsets = records.pack_batch(flat, splits)
  assert [packed[offsets[i]:offsets[i + 1]] for i in range(len(rows))] == [
      encoder.pack(r) for r in rows]
  packed, offsets = records.pack_batch([2**40, 1], [0, 1, 2])  # The slow path.
  assert [packed[offsets[0]:offsets[1]], packed[offsets[1]:]] == [records.varint(2**40), b"\x01"]


def test_parts_packed_equals_parts():
  encoder = records.ExampleEncoder()
  for example_id, ids in [("q1", [2, 300, 3]), ("x" * 5000, [2] * 3000), ("", [1]),
                          ("id", list(range(20000, 22000)))]:
    packed, offsets = records.pack_batch(ids, [0, len(ids)])
    types = [0] * (len(ids) - 1) + [1]
    assert encoder.parts_packed(example_id, packed, len(ids), bytes(types)) == encoder.parts(
        example_id, ids, types)
