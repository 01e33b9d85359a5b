"""Exact statistics, plots, and the optional W&B logging of the preprocessing job."""
import collections
import dataclasses
import os

import pytest

from bertcore import schema
from bertcore import windows
from preprocess import stats


def test_summarize_nearest_rank():
  histogram = collections.Counter({v: 1 for v in range(1, 101)})  # 1..100
  assert stats.summarize(histogram) == {"mean": 50.5, "p50": 50, "p90": 90, "p95": 95, "p99": 99,
                                        "max": 100}
  assert stats.summarize({7: 3, 200: 1}) == {"mean": 55.25, "p50": 7, "p90": 200, "p95": 200,
                                             "p99": 200, "max": 200}
  assert stats.summarize({}) == dict.fromkeys(["mean", "p50", "p90", "p95", "p99", "max"])


def test_add_merge_and_json_round_trip():
  a, b = stats.empty_stats(), stats.empty_stats()
  stats.add_row(a, ("1",), 10, False, False, 3, 12)
  stats.add_row(b, ("0", "1"), 130, True, True, 90, 500)
  merged = stats.merge_stats(stats.from_json(stats.to_json(a)), b)
  assert merged["rows"] == 2 and merged["truncated"] == 1 and merged["long_text"] == 1
  assert merged["label_histogram"] == {"0": 1, "1": 2}
  assert merged["token_length"] == {10: 1, 130: 1}
  summary = stats.split_summary(merged, ["0", "1", "2"], {"s-1": 1, "s-0": 1}, 128)
  assert list(summary["shards"]) == ["s-0", "s-1"]
  assert summary["label_histogram"] == {"0": 1, "1": 2, "2": 0}
  assert summary["words"]["max"] == 90 and summary["chars"]["p50"] == 12
  # The one truncated row had 130 ids before truncation and 128 after: 2 pieces cut.
  assert summary["truncated_pieces"] == {"mean": 2.0, "p50": 2, "p90": 2, "p95": 2, "p99": 2,
                                         "max": 2}


def test_pieces_cut_counts_only_truncated_rows():
  # token_length (ids before truncation) -> rows; max_seq_length 8: 8 fits, 9 loses 1 piece.
  assert stats.pieces_cut({5: 3, 8: 2, 9: 4, 20: 1}, 8) == {1: 4, 12: 1}
  assert stats.pieces_cut({5: 3, 8: 2}, 8) == {}


def _manifest(truncation, splits):
  return schema.Manifest(labels=["0", "1"], vocab_sha256="x", max_seq_length=8,
                         truncation=truncation, splits=splits)


def test_truncation_summary_gives_the_count_and_the_pieces_cut_per_split():
  split_stats = {s: stats.empty_stats() for s in ("train", "validation", "test")}
  # train: 8 rows, 2 truncated (token lengths 9 and 40: 1 and 32 pieces cut); validation: 1
  # row, none truncated; test: empty.
  for length in (3, 4, 5, 6, 7, 8, 9, 40):
    stats.add_row(split_stats["train"], ("1",), length, length > 8, False, 1, 1)
  stats.add_row(split_stats["validation"], ("0",), 5, False, False, 1, 1)
  splits = {s: schema.SplitInfo(**stats.split_summary(v, ["0", "1"], {}, 8))
            for s, v in split_stats.items()}
  assert splits["train"].truncated_pieces["mean"] == 16.5
  assert stats.truncation_summary(_manifest("head_tail", splits)) == (
      "truncated (head_tail, max_seq_length 8): train 2 of 8 rows (pieces cut among them: "
      "mean 16.5, p90 32), validation 0 of 1 rows, test 0 of 0 rows")


def test_truncation_summary_of_an_old_manifest_gives_the_share_only():
  old = schema.Manifest.from_json({
      "labels": ["0", "1"], "vocab_sha256": "x", "max_seq_length": 8,
      "splits": {"train": {"rows": 4, "truncated": 1}}})
  assert old.truncation == "head" and old.splits["train"].truncated_pieces == {}
  assert stats.truncation_summary(old) == "truncated (head, max_seq_length 8): train 1 of 4 rows"


def test_plots_are_png(tmp_path):
  split_stats = {"train": stats.empty_stats(), "validation": stats.empty_stats(),
                 "test": stats.empty_stats()}
  for i in range(50):
    stats.add_row(split_stats["train"], (str(i % 2),), 5 + i, False, False, i, 4 * i)
  written = stats.write_plots(str(tmp_path), split_stats, ["0", "1"])
  assert written == ["plots/label_distribution.png", "plots/token_length.png", "plots/words.png",
                     "plots/chars.png"]
  for relative in written:
    assert (tmp_path / relative).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("project,env,expected", [
    ("", {"WANDB_MODE": "offline"}, False),
    ("p", {"WANDB_MODE": "disabled"}, False),
    ("p", {"WANDB_MODE": "offline"}, True),
    ("p", {"WANDB_MODE": "online", "WANDB_API_KEY": "k"}, True),
    ("p", {"WANDB_MODE": "online"}, False),  # No key (and HOME without a .netrc).
])
def test_wandb_enabled(project, env, expected, monkeypatch, tmp_path):
  for name in ("WANDB_MODE", "WANDB_API_KEY"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert stats.wandb_enabled(project) is expected


def test_log_to_wandb_offline_keeps_the_key_out(tmp_path, monkeypatch):
  sentinel = "SENTINEL-KEY-0123456789abcdef0123456789abcdef"
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_API_KEY", sentinel)
  monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  os.makedirs(tmp_path / "wandb_dir")
  split_stats = {"train": stats.empty_stats(), "validation": stats.empty_stats(),
                 "test": stats.empty_stats()}
  stats.add_row(split_stats["train"], ("1",), 9, False, False, 4, 20)
  plots = stats.write_plots(str(tmp_path), split_stats, ["0", "1"])
  manifest = schema.Manifest(
      input_files=["a.csv"], labels=["0", "1"], max_seq_length=16, num_shards=1,
      split_fractions={"train": 1.0, "validation": 0.0, "test": 0.0}, vocab_sha256="x",
      lower_case=True, rows_read=2, rows_written=1, rows_rejected_total=1,
      rows_rejected={"empty_text": 1}, plots=plots,
      splits={s: schema.SplitInfo(**stats.split_summary(v, ["0", "1"], {}, 16))
              for s, v in split_stats.items()})
  stats.log_to_wandb("preprocess-test", manifest, str(tmp_path))
  run_dirs = list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))
  assert len(run_dirs) == 1
  for root, _, names in os.walk(tmp_path):
    for name in names:
      assert sentinel.encode() not in open(os.path.join(root, name), "rb").read(), name


def test_add_rows_equals_add_row():
  one, many = stats.empty_stats(), stats.empty_stats()
  data = [(("1",), 10, False, False, 3, 12), (("0", "1"), 130, True, True, 90, 500),
          (("1",), 10, True, False, 3, 11), ((), 4, False, False, 1, 2)]
  for row in data:
    stats.add_row(one, *row)
  stats.add_rows(many, *zip(*data))
  assert one == many


def test_rare_labels_are_under_five_rows_or_a_tenth_of_a_percent():
  assert stats.rare_labels({"0": 6000, "1": 3993, "7": 7}, 10_000) == ["7"]  # 0.07%
  assert stats.rare_labels({"x": 4990, "y": 5000, "z": 10}, 10_000) == []  # 0.1%: not under it
  assert stats.rare_labels({"a": 4, "b": 100}, 104) == ["a"]  # under 5 rows
  assert stats.rare_labels({"a": 5, "b": 5}, 10) == []
  assert stats.rare_labels({"a": 0, "b": 9}, 9) == ["a"]  # only on rows rejected later


def test_rare_label_warning_names_the_count_and_the_flags_that_fix_it():
  counts = {"0": 6000, "1": 3993, "7": 7}
  assert stats.rare_label_warning("7", counts, 10_000) == (
      "warning: discovered label '7' is on only 7 of 10000 rows (0.07%); if it is a typo, fix "
      "the classes with --labels=0,1 (other values are then rejected as unknown_label) or merge "
      "it with --label_map=<raw>:<class>,...")


def test_label_counts_add_up_the_splits():
  manifest = schema.Manifest.from_json({
      "labels": ["b", "a"], "vocab_sha256": "x", "max_seq_length": 8, "splits": {
          "train": {"rows": 4, "label_histogram": {"a": 3, "b": 1}},
          "validation": {"rows": 1, "label_histogram": {"a": 1, "b": 0}},
          "test": {"rows": 0, "label_histogram": {}}}})
  assert list(stats.label_counts(manifest).items()) == [("b", 1), ("a", 4)]


def test_windows_of_chunked_splits_and_their_summary():
  # Windows of 8 ids (6 pieces), step 4, at most 3 (14 pieces): documents of 1, 6, 7, 10, 11 and
  # 80 pieces are read in 1, 1, 2, 2, 3 and 3 windows; the 80-piece one lost 80 - 14 pieces.
  geometry = windows.Geometry(chunk_length=8, chunk_overlap=2, max_chunks=3)
  split_stats = {s: stats.empty_stats() for s in ("train", "validation", "test")}
  for pieces in (1, 6, 7, 10, 11, 80):
    stats.add_row(split_stats["train"], ("1",), pieces + 2, pieces > 14, False, 1, 1)
  assert stats.windows_histogram(split_stats["train"]["token_length"], geometry) == {
      1: 2, 2: 2, 3: 2}
  splits = {s: schema.SplitInfo(**stats.split_summary(v, ["0", "1"], {}, 16, geometry))
            for s, v in split_stats.items()}
  assert splits["train"].windows == {"mean": 2.0, "p50": 2, "p90": 3, "p95": 3, "p99": 3,
                                     "max": 3}
  assert splits["train"].truncated_pieces["max"] == 66
  manifest = dataclasses.replace(_manifest("head", splits), chunking=geometry.to_json())
  assert stats.truncation_summary(manifest) == (
      "truncated (head, chunked: 14 word pieces = 3 windows of 8 ids, overlap 2): train 1 of "
      "6 rows (pieces cut among them: mean 66.0, p90 66), validation 0 of 0 rows, test 0 of 0 "
      "rows")
  assert stats.windows_summary(manifest) == (
      "windows per document: train mean 2.00, p90 3, max 3, validation none, test none")
  # Unchunked: no windows recorded.
  assert stats.split_summary(split_stats["train"], ["0", "1"], {}, 8)["windows"] == {}
