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
