"""Preprocessing: bad input and determinism, the cases tests/test_preprocess_job.py leaves open.

Already proven there, not repeated here:
  - a CSV with 20+ kinds of bad or strange rows (BOM, CRLF, quotes in quotes, newlines, a 1 MB
    text, non-UTF-8, " 1" / "1.0" / "yes" labels, extra / missing columns, NUL, emoji and RTL,
    a repeated id, ...): each row written or rejected with its reason, and
    rows_read == rows_written + rows_rejected_total exactly (test_bad_rows_exact_counts,
    test_dead_letter_file, test_written_examples_exact); a header-only file next to it;
  - the same bytes with other batch sizes and a 2-thread runner
    (test_same_bytes_whatever_the_batching_and_parallelism); split = salted SHA-1 of the id
    (test_preprocess_rows.test_assign_split_is_deterministic_and_follows_fractions);
  - no valid row: fatal, no manifest left (test_no_valid_row_is_fatal_and_leaves_no_manifest).
Added here:
  - a header-only, BOM-only, blank or empty file as the only input: one clear error, no manifest;
  - the job run twice into the same output dir: every file byte-identical, plots included;
  - worker PROCESSES (Python's hash() differs per process, threads share it) over the rows
    shuffled into three files give the shards of one process reading one file: an example's
    split and shard depend on its id only.
"""
import json
import os
import random

import pytest

from bertcore import schema
from preprocess import run as run_lib

WORDS = ["how", "are", "you", "?", "hello", "world", "what", "is", "this", "plain", "question",
         "the", "cat", "sat", "on", "mat", "a", "dog", "."]


def args(inputs, output_dir, vocab_file, *extra):
  return [f"--input={inputs}", f"--output_dir={output_dir}", f"--vocab_file={vocab_file}",
          "--labels=0,1", "--max_seq_length=16", "--num_shards=3", *extra]


def file_bytes(output_dir):
  """{relative path: bytes} of every file the job wrote."""
  out = {}
  for root, _, names in os.walk(output_dir):
    for name in names:
      path = os.path.join(root, name)
      out[os.path.relpath(path, output_dir)] = open(path, "rb").read()
  return out


@pytest.mark.parametrize("content,message", [
    (b"qid,question_text,target\r\n", "no valid row in 1 input file(s) (0 read, rejected: {})"),
    (b"\xef\xbb\xbfqid,question_text,target", "no valid row in 1 input file(s) (0 read"),
    (b"\xef\xbb\xbf", "is empty: every input file needs a header row"),
    (b"\r\n\n", "is empty: every input file needs a header row"),
    (b"", "is empty: every input file needs a header row"),
])
def test_an_input_without_rows_is_refused_and_leaves_no_manifest(tmp_path, tiny_vocab_file,
                                                                 content, message):
  (tmp_path / "in.csv").write_bytes(content)
  out = tmp_path / "out"
  out.mkdir()
  (out / schema.MANIFEST).write_text("{}")        # from an earlier run: must not survive
  with pytest.raises(ValueError) as error:
    run_lib.run(args(str(tmp_path / "in.csv"), str(out), tiny_vocab_file))
  assert message in str(error.value) and "\n" not in str(error.value)
  if "is empty" in message:
    assert str(error.value).startswith(f"{tmp_path / 'in.csv'} is empty")
  else:
    assert not (out / schema.MANIFEST).exists()
    with pytest.raises(schema.DataError, match="has no manifest.json"):
      schema.read_manifest(str(out))              # the trainer refuses this directory


@pytest.fixture(scope="module")
def rows_inputs(tmp_path_factory):
  """90 valid rows + 2 bad ones, as one file, and shuffled over three files."""
  base = tmp_path_factory.mktemp("rows")
  rng = random.Random(3)
  rows = [(f"r{i:03d}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))),
           str(rng.randint(0, 1))) for i in range(90)]
  rows += [("bad1", "some text", "yes"), ("bad2", "", "0")]   # unknown_label, empty_text

  def write(path, chunk):
    with open(path, "w", encoding="utf-8") as f:
      f.write("qid,question_text,target\n" + "".join(",".join(r) + "\n" for r in chunk))
  write(base / "one.csv", rows)
  shuffled = rows[:]
  rng.shuffle(shuffled)
  (base / "parts").mkdir()
  for k, name in enumerate("abc"):
    write(base / "parts" / f"{name}.csv", shuffled[k::3])
  return str(base / "one.csv"), str(base / "parts" / "*.csv")


@pytest.fixture(scope="module")
def one_file_run(rows_inputs, tmp_path_factory, tiny_vocab_file):
  output_dir = str(tmp_path_factory.mktemp("one") / "out")
  manifest = run_lib.run(args(rows_inputs[0], output_dir, tiny_vocab_file))
  return output_dir, manifest


def test_run_twice_into_the_same_dir_gives_the_same_bytes(rows_inputs, one_file_run,
                                                          tiny_vocab_file):
  output_dir, manifest = one_file_run
  assert manifest.rows_read == 92 and manifest.rows_written == 90
  assert manifest.rows_rejected == {"empty_text": 1, "unknown_label": 1}
  assert manifest.rows_read == manifest.rows_written + manifest.rows_rejected_total
  first = file_bytes(output_dir)
  assert len(first) == 9 + 2 + 4               # shards, manifest + rejected.jsonl, 4 plots
  run_lib.run(args(rows_inputs[0], output_dir, tiny_vocab_file))
  assert file_bytes(output_dir) == first


def test_worker_processes_and_file_layout_do_not_move_examples(rows_inputs, one_file_run,
                                                               tmp_path, tiny_vocab_file):
  output_dir, manifest = one_file_run
  parallel_dir = str(tmp_path / "parallel")
  parallel = run_lib.run(args(rows_inputs[1], parallel_dir, tiny_vocab_file,
                              "--direct_num_workers=2", "--direct_running_mode=multi_processing"))
  assert len(parallel.input_files) == 3
  for key in ("rows_read", "rows_written", "rows_rejected", "splits", "labels"):
    assert getattr(parallel, key) == getattr(manifest, key), key
  one, many = file_bytes(output_dir), file_bytes(parallel_dir)
  shards = sorted(p for p in one if ".tfrecord" in p)
  assert len(shards) == 9 and sum(manifest.splits[s].rows for s in schema.SPLITS) == 90
  for path in shards:
    assert many[path] == one[path], path
  reasons = [json.loads(line)["reason"] for line in many["rejected.jsonl"].decode().splitlines()]
  assert sorted(reasons) == ["empty_text", "unknown_label"]
