"""benchmarks/export_split_ids.py: the .npz files hold exactly the rows of the shards."""
import os
import sys

import numpy as np
import pytest

import trainer_fixtures as fx
from bertcore import files, schema

# benchmarks/ is not an installed package: import it from the repository root.
sys.path.insert(0, fx.REPO)
from benchmarks import export_split_ids  # noqa: E402  pylint: disable=wrong-import-position

LABELS = ("negative", "neutral", "positive")


def shard_order(rows, num_shards):
  """The rows in the order the shards hold them (write_data_dir puts row i in shard i % n)."""
  return [row for s in range(num_shards) for row in rows[s::num_shards]]


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_export_round_trips_ids_lengths_and_positive_labels(tmp_path, compression):
  rows = {"train": fx.example_rows(40, seed=1, num_labels=3),
          "validation": fx.example_rows(9, seed=2, num_labels=3),
          "test": fx.example_rows(7, seed=3, num_labels=3)}
  data_dir, out_dir = str(tmp_path / "data"), str(tmp_path / "ids")
  fx.write_data_dir(data_dir, rows, labels=LABELS, num_shards=3, compression=compression)

  counts = export_split_ids.export(data_dir, out_dir, "positive")

  for split, written in rows.items():
    want = shard_order(written, 3)
    got = files.read_npz(os.path.join(out_dir, f"{split}.npz"))
    assert list(got["example_ids"]) == [r[0] for r in want]
    assert got["lengths"].tolist() == [len(r[1]) for r in want]
    rows_back = np.split(got["input_ids"], np.cumsum(got["lengths"])[:-1])
    assert [r.tolist() for r in rows_back] == [r[1] for r in want]
    assert got["type_ids"].tolist() == [t for r in want for t in r[2]]
    # positive-vs-rest: label id 2 ("positive") is 1, "negative" and "neutral" are 0
    assert got["labels"].tolist() == [int(r[3] == [2]) for r in want]
    assert got["input_ids"].dtype == got["labels"].dtype == np.int32
    assert counts[split] == (len(want), sum(r[3] == [2] for r in want))


def test_export_refuses_multi_label_rows_and_unknown_labels(tmp_path):
  data_dir = str(tmp_path / "data")
  multi = [("a", [2, 6, 3], [0, 0, 0], [0, 1])]
  fx.write_data_dir(data_dir, {"train": multi, "validation": multi, "test": multi},
                    labels=("rest", "positive"), num_shards=1, multi_label=True)
  with pytest.raises(schema.DataError, match="exactly one label id per row"):
    export_split_ids.export(data_dir, str(tmp_path / "ids"), "positive")
  with pytest.raises(schema.DataError, match="'happy' is not one of"):
    export_split_ids.export(data_dir, str(tmp_path / "ids"), "happy")


def test_main_prints_one_line_for_a_dir_without_manifest(tmp_path):
  with pytest.raises(SystemExit, match="^error: .* has no manifest.json"):
    export_split_ids.main([f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'ids'}"])
