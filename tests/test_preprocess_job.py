"""The whole job on a CSV full of bad and strange rows: exact counts, determinism, manifest."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from bertcore import schema
from bertcore import tokenization
from preprocess import rows
from preprocess import run as run_lib
from preprocess import stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = b"long " * 200_000  # 1,000,000 characters: a long_text, truncated and kept.

# (line, bytes) of bad.csv: UTF-8 with a BOM, CRLF line ends. The comment says what must happen.
BAD_ROWS = [
    b"\xef\xbb\xbfqid,question_text,target\r\n",     # 1 header, with a BOM
    b"q01,plain question,0\r\n",                      # 2 kept
    b'q02,"comma, inside",1\r\n',                     # 3 kept: quoted comma
    b'q03,"she said ""hi""",0\r\n',                   # 4 kept: quotes inside quotes
    b'q04,"line one\r\nline two",1\r\n',              # 5-6 kept: newline inside the text
    b"q05," + LONG + b",0\r\n",                       # 7 kept: 1 MB text, long_text + truncated
    b"q06,bad \xff byte,1\r\n",                       # 8 undecodable (not UTF-8)
    b"q07,label with space, 1\r\n",                   # 9 kept: " 1" is "1"
    b"q08,label float,1.0\r\n",                       # 10 unknown_label: "1.0" is not "1"
    b"q09,label yes,yes\r\n",                         # 11 unknown_label
    b"q10,extra column,0,extra\r\n",                  # 12 wrong_column_count
    b"q11,missing column\r\n",                        # 13 wrong_column_count
    b"q12,nul\x00char,0\r\n",                         # 14 nul_character
    "q13,emoji \U0001F600 and \u05e2\u05d1\u05e8\u05d9\u05ea rtl,1\r\n".encode(),  # 15 kept
    b"q01,same id different label,1\r\n",             # 16 duplicate_id (line 2 came first)
    b"q14,,0\r\n",                                    # 17 empty_text
    b"q15,   ,1\r\n",                                 # 18 empty_text (whitespace)
    b"q16,missing label,\r\n",                        # 19 missing_label
    b",no id,0\r\n",                                  # 20 missing_id
    b'q17,"\x01\x02",0\r\n',                          # 21 empty_text (no word piece)
    b"\r\n",                                          # 22 blank line: not a row
    b'q18,"unterminated quote\r\nq19,swallowed,0\r\n',  # 23-24 wrong_column_count
]
EXPECTED_REJECTED = {"duplicate_id": 1, "empty_text": 3, "missing_id": 1, "missing_label": 1,
                     "nul_character": 1, "undecodable": 1, "unknown_label": 2,
                     "wrong_column_count": 3}
EXPECTED_DEAD_LETTER = [  # (line, reason), sorted by line
    (8, "undecodable"), (10, "unknown_label"), (11, "unknown_label"), (12, "wrong_column_count"),
    (13, "wrong_column_count"), (14, "nul_character"), (16, "duplicate_id"), (17, "empty_text"),
    (18, "empty_text"), (19, "missing_label"), (20, "missing_id"), (21, "empty_text"),
    (23, "wrong_column_count")]
# id -> (input_ids, label_ids) with the tiny vocabulary (conftest.TINY_VOCAB), max_seq_length 16.
EXPECTED_EXAMPLES = {
    "q01": ([2, 14, 15, 3], [0]),                  # the first q01, label 0, wins
    "q02": ([2, 16, 9, 17, 3], [1]),
    "q03": ([2, 18, 19, 20, 21, 20, 3], [0]),
    "q04": ([2, 22, 23, 22, 24, 3], [1]),
    "q05": ([2] + [25] * 14 + [3], [0]),
    "q07": ([2, 26, 27, 28, 3], [1]),
    "q13": ([2, 29, 1, 30, 1, 31, 32, 3], [1]),    # emoji, Hebrew -> [UNK]; rtl -> rt ##l
}


def make_inputs(directory):
  directory.mkdir()
  (directory / "bad.csv").write_bytes(b"".join(BAD_ROWS))
  (directory / "header_only.csv").write_bytes(b"target,question_text,qid\n")
  return str(directory / "*.csv")


def job_args(pattern, output_dir, vocab_file, *extra):
  return [f"--input={pattern}", f"--output_dir={output_dir}", f"--vocab_file={vocab_file}",
          "--labels=0,1", "--max_seq_length=16", "--num_shards=2", *extra]


def read_examples(output_dir, split, compression=None):
  """{example_id: (input_ids, label_ids)} of one split, and the shard files' ids in order."""
  files = sorted(tf.io.gfile.glob(schema.shard_pattern(output_dir, split, compression)))
  out, ordered = {}, []
  for path in files:
    ids = []
    for record in tf.data.TFRecordDataset(path, compression_type=compression or ""):
      parsed = tf.io.parse_single_example(record, schema.FEATURE_SPEC)
      example_id = parsed["example_id"].numpy().decode()
      input_ids = tf.sparse.to_dense(parsed["input_ids"]).numpy().tolist()
      assert parsed["length"].numpy() == len(input_ids)
      assert tf.sparse.to_dense(parsed["type_ids"]).numpy().tolist() == [0] * len(input_ids)
      out[example_id] = (input_ids, tf.sparse.to_dense(parsed["label_ids"]).numpy().tolist())
      ids.append(example_id)
    ordered.append(ids)
  return out, ordered


def all_bytes(output_dir):
  """{relative path: bytes} of every shard, the dead-letter file and the manifest."""
  out = {}
  for root, _, names in os.walk(output_dir):
    for name in names:
      if name.endswith((".tfrecord", ".tfrecord.gz", ".jsonl", ".json")):
        path = os.path.join(root, name)
        out[os.path.relpath(path, output_dir)] = open(path, "rb").read()
  return out


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, tiny_vocab_file):
  """One run of the job on the bad-row CSV, shared by the tests below."""
  base = tmp_path_factory.mktemp("bad")
  pattern = make_inputs(base / "in")
  output_dir = str(base / "out")
  manifest = run_lib.run(job_args(pattern, output_dir, tiny_vocab_file))
  return pattern, output_dir, manifest


def test_bad_rows_exact_counts(bad_run):
  _, output_dir, manifest = bad_run
  assert manifest.rows_read == 20
  assert manifest.rows_written == 7
  assert manifest.rows_rejected == EXPECTED_REJECTED
  assert manifest.rows_rejected_total == 13
  assert manifest.rows_read == manifest.rows_written + manifest.rows_rejected_total
  assert sum(s.rows for s in manifest.splits.values()) == 7
  assert sum(s.long_text for s in manifest.splits.values()) == 1
  assert sum(s.truncated for s in manifest.splits.values()) == 1


def test_dead_letter_file(bad_run):
  pattern, output_dir, _ = bad_run
  with open(os.path.join(output_dir, "rejected.jsonl"), encoding="utf-8") as f:
    lines = [json.loads(line) for line in f]
  bad_csv = pattern.replace("*.csv", "bad.csv")
  assert [(r["line"], r["reason"]) for r in lines] == EXPECTED_DEAD_LETTER
  assert {r["file"] for r in lines} == {bad_csv}
  assert lines[0]["excerpt"] == "q06,bad \\xff byte,1"
  assert lines[5]["excerpt"] == "q12,nul\x00char,0"
  assert lines[6]["excerpt"] == "q01,same id different label,1"


def test_written_examples_exact(bad_run):
  _, output_dir, _ = bad_run
  examples = {}
  for split in schema.SPLITS:
    got, ordered = read_examples(output_dir, split)
    examples.update(got)
    for ids in ordered:  # Each shard is in the order of a salted hash of the id.
      assert ids == sorted(ids, key=lambda i: rows.order_key(i, "bert-tf-finetune"))
  assert examples == EXPECTED_EXAMPLES


def test_manifest(bad_run, tiny_vocab_file):
  pattern, output_dir, manifest = bad_run
  assert schema.read_manifest(output_dir) == manifest
  on_disk = json.load(open(os.path.join(output_dir, "manifest.json")))
  assert on_disk == manifest.to_json()  # the file format: the same keys as ever
  assert schema.Manifest.from_json(on_disk) == manifest
  assert set(on_disk) == {
      "package_version", "input_files", "encoding", "columns", "labels", "multi_label",
      "vocab_sha256", "vocab_size", "lower_case", "tokenizer", "max_seq_length", "compression",
      "num_shards", "split_fractions", "rows_read", "rows_written", "rows_rejected",
      "rows_rejected_total", "dead_letter_file", "splits", "plots",
      "test_input_files", "delimiter", "unescape_html", "truncation", "chunking"}
  assert manifest.chunking is None  # --max_chunks=0: truncated, as before
  assert all(entry.windows == {} for entry in manifest.splits.values())
  assert (manifest.test_input_files, manifest.delimiter, manifest.unescape_html) == (
      [], ",", False)
  assert manifest.truncation == "head"
  assert manifest.input_files == [pattern.replace("*", "bad"),
                                     pattern.replace("*", "header_only")]
  assert manifest.columns == {"id": "qid", "text": "question_text", "text_pair": None,
                                 "label": "target"}
  assert manifest.labels == ["0", "1"]
  assert manifest.vocab_sha256 == tokenization.vocab_sha256(
      tokenization.load_vocab(tiny_vocab_file))
  assert manifest.tokenizer == {"type": "FastBertTokenizer", "vocab_file": tiny_vocab_file,
                                   "lower_case": True}
  assert (manifest.max_seq_length, manifest.num_shards, manifest.compression) == (
      16, 2, None)
  assert manifest.split_fractions == {"train": 0.8, "validation": 0.1, "test": 0.1}
  hist = {"0": 0, "1": 0}
  for split, entry in manifest.splits.items():
    assert list(entry.shards) == [f"{split}-0000{i}-of-00002.tfrecord" for i in range(2)]
    assert sum(entry.shards.values()) == entry.rows
    for name, n in entry.label_histogram.items():
      hist[name] += n
  assert hist == {"0": 3, "1": 4}
  assert max(e.chars["max"] or 0 for e in manifest.splits.values()) == 1_000_000
  # 200,000 pieces + [CLS] [SEP] before truncation for the 1 MB text cut to 100,000 chars.
  assert max(e.token_length["max"] or 0 for e in manifest.splits.values()) == 20_002
  # The only truncated row lost 20,002 - 16 word pieces.
  assert [e.truncated_pieces["max"] for e in manifest.splits.values() if e.truncated] == [19_986]
  for plot in manifest.plots:
    assert open(os.path.join(output_dir, plot), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert len(manifest.plots) == 4
  assert not os.path.exists(os.path.join(output_dir, "_preprocess_tmp"))


def test_same_bytes_whatever_the_batching_and_parallelism(bad_run, tmp_path, tiny_vocab_file):
  pattern, output_dir, _ = bad_run
  again = str(tmp_path / "again")
  run_lib.run(job_args(pattern, again, tiny_vocab_file, "--batch_size=3",
                       "--direct_num_workers=2", "--direct_running_mode=multi_threading"))
  first, second = all_bytes(output_dir), all_bytes(again)
  assert len(first) == 3 * 2 + 2  # 6 shards + rejected.jsonl + manifest.json
  assert first == second


def test_gzip_and_rerun_over_an_old_output(bad_run, tmp_path, tiny_vocab_file):
  pattern, output_dir, _ = bad_run
  out = str(tmp_path / "gz")
  # A stale output in the way: a manifest and a shard of another shard count.
  os.makedirs(os.path.join(out, "train"))
  open(os.path.join(out, "manifest.json"), "w").write("{}")
  open(os.path.join(out, "train", "train-00007-of-00009.tfrecord"), "w").write("stale")
  manifest = run_lib.run(job_args(pattern, out, tiny_vocab_file, "--compression=gzip"))
  assert manifest.compression == "GZIP"
  assert sorted(os.listdir(os.path.join(out, "train"))) == [
      "train-00000-of-00002.tfrecord.gz", "train-00001-of-00002.tfrecord.gz"]
  examples = {}
  for split in schema.SPLITS:
    examples.update(read_examples(out, split, "GZIP")[0])
  assert examples == EXPECTED_EXAMPLES


def test_pairs_unlabeled_content_ids_without_prism(tmp_path, tiny_vocab_file, monkeypatch,
                                                   capsys):
  # The job must never try Beam's Prism runner (it downloads a binary) nor DirectRunner's path.
  from apache_beam.runners.direct import direct_runner
  from apache_beam.runners.portability import prism_runner

  def refuse(*args, **kwargs):
    raise AssertionError("Prism / DirectRunner must not be used")
  monkeypatch.setattr(prism_runner.PrismRunner, "__init__", refuse)
  monkeypatch.setattr(direct_runner.DirectRunner, "run_pipeline", refuse)
  # W&B logging comes after the manifest, and its failure does not fail the job.
  logged = []

  def fail_after_manifest(project, manifest, output_dir):
    logged.append(os.path.exists(os.path.join(output_dir, "manifest.json")))
    raise RuntimeError("W&B is down")
  monkeypatch.setattr(stats, "log_to_wandb", fail_after_manifest)
  monkeypatch.setenv("WANDB_MODE", "offline")

  (tmp_path / "pairs.csv").write_text(
      "text,pair\nwhat is this,how are you ?\nthe cat,a dog\nthe cat,a dog\n", encoding="utf-8")
  out = str(tmp_path / "out")
  manifest = run_lib.run([
      f"--input={tmp_path / 'pairs.csv'}", f"--output_dir={out}", f"--vocab_file={tiny_vocab_file}",
      "--id_column=", "--text_column=text", "--text_pair_column=pair", "--label_column=",
      "--max_seq_length=8", "--num_shards=1", "--runner=DirectRunner", "--wandb_project=p"])
  assert logged == [True]
  assert "warning: W&B logging failed (RuntimeError: W&B is down)" in capsys.readouterr().err
  assert manifest.labels == [] and manifest.columns["label"] is None
  assert (manifest.rows_read, manifest.rows_written) == (3, 2)
  assert manifest.rows_rejected == {"duplicate_id": 1}  # The same texts twice.
  got = {}
  for split in schema.SPLITS:
    for serialized in tf.data.TFRecordDataset(schema.shard_path(out, split, 0, 1)).batch(8):
      r = schema.parse_examples(serialized)
      for i, example_id in enumerate(r["example_id"].numpy()):
        got[example_id.decode()] = (r["input_ids"][i].numpy().tolist(),
                                    r["type_ids"][i].numpy().tolist(),
                                    r["label_ids"][i].numpy().tolist())
  assert got == {
      rows.content_id("what is this", "how are you ?"):
          ([2, 11, 12, 13, 3, 4, 5, 3], [0, 0, 0, 0, 0, 1, 1, 1], []),
      rows.content_id("the cat", "a dog"): ([2, 34, 35, 3, 39, 40, 3], [0, 0, 0, 0, 1, 1, 1], []),
  }
  assert sum(e.truncated for e in manifest.splits.values()) == 1


def test_head_tail_at_512_and_the_summary_line(tmp_path, tiny_vocab_file, capsys):
  # the=34 cat=35 sat=36 a=39 dog=40 in conftest.TINY_VOCAB; one word piece per word.
  long_800 = " ".join(["the"] * 100 + ["cat"] * 600 + ["sat"] * 100)
  long_1000 = " ".join(["the"] * 1000)
  (tmp_path / "long.csv").write_text(
      f"qid,question_text,target\nq1,{long_800},1\nq2,{long_1000},0\nq3,a dog,0\n")
  out = str(tmp_path / "out")
  run_lib.main([f"--input={tmp_path / 'long.csv'}", f"--output_dir={out}",
                f"--vocab_file={tiny_vocab_file}", "--max_seq_length=512", "--num_shards=1",
                "--truncation=head_tail", "--train_fraction=1", "--validation_fraction=0"])
  summary = capsys.readouterr().out
  # 800 and 1000 pieces cut to 510: 290 and 490 pieces cut.
  assert ("; truncated (head_tail, max_seq_length 512): train 2 of 3 rows (pieces cut among "
          "them: mean 390.0, p90 490), validation 0 of 0 rows, test 0 of 0 rows; ") in summary
  examples, _ = read_examples(out, "train")
  # Budget 510: the first 510 // 4 = 127 pieces and the last 383.
  assert examples["q1"][0] == [2] + [34] * 100 + [35] * 27 + [35] * 283 + [36] * 100 + [3]
  assert examples["q2"][0] == [2] + [34] * 510 + [3]
  assert examples["q3"][0] == [2, 39, 40, 3]
  manifest = schema.read_manifest(out)
  assert (manifest.truncation, manifest.max_seq_length) == ("head_tail", 512)
  assert manifest.splits["train"].token_length["max"] == 1002


def test_no_valid_row_is_fatal_and_leaves_no_manifest(tmp_path, tiny_vocab_file):
  (tmp_path / "in.csv").write_text("qid,question_text,target\nq1,,0\nq2,hello,7\n")
  out = tmp_path / "out"
  out.mkdir()
  (out / "manifest.json").write_text("{}")  # From an earlier run: must not survive.
  with pytest.raises(schema.DataError, match=r"no valid row in 1 input file\(s\) \(2 read, "
                                             r"rejected: \{'empty_text': 1, 'unknown_label': 1\}"):
    run_lib.run(job_args(str(tmp_path / "in.csv"), str(out), tiny_vocab_file))
  assert not (out / "manifest.json").exists()
  with pytest.raises(schema.DataError):
    schema.read_manifest(str(out))


def test_fatal_error_in_a_subprocess_is_one_line(tmp_path, tiny_vocab_file):
  result = subprocess.run(
      [sys.executable, "-m", "preprocess.run",
       *job_args(str(tmp_path / "nothing*.csv"), str(tmp_path / "out"), tiny_vocab_file)],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: no input files match {tmp_path / 'nothing*.csv'}"), result.stderr
  assert not os.path.exists(tmp_path / "out")


def test_missing_column_exits_with_one_line(tmp_path, tiny_vocab_file, capsys):
  (tmp_path / "in.csv").write_text("qid,question_text\nq1,hello\n")
  pattern = str(tmp_path / "in.csv")
  with pytest.raises(SystemExit) as exit_info:
    run_lib.main(job_args(pattern, str(tmp_path / "out"), tiny_vocab_file))
  assert exit_info.value.code == (
      f"error: {pattern}: column 'target' is not in the header ['qid', 'question_text'] "
      "(use --label_column='' for input without labels)")
  assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_chunked_documents_are_stored_whole_up_to_the_cap(tmp_path, tiny_vocab_file, capsys):
  # Windows of 8 ids (6 pieces), overlap 2, at most 3: 14 pieces kept; the=34 cat=35 in
  # conftest.TINY_VOCAB, one word piece each. q1 is 10x the window.
  (tmp_path / "long.csv").write_text(
      "qid,question_text,target\n"
      f"q1,{' '.join(['the'] * 40 + ['cat'] * 40)},1\nq2,the cat,0\nq3,{'cat ' * 10},0\n")
  out = str(tmp_path / "out")
  run_lib.main([f"--input={tmp_path / 'long.csv'}", f"--output_dir={out}",
                f"--vocab_file={tiny_vocab_file}", "--max_seq_length=8", "--max_chunks=3",
                "--chunk_overlap=2", "--num_shards=1", "--train_fraction=1",
                "--validation_fraction=0"])
  summary = capsys.readouterr().out
  assert ("; truncated (head, chunked: 14 word pieces = 3 windows of 8 ids, overlap 2): train 1 "
          "of 3 rows (pieces cut among them: mean 66.0, p90 66), validation 0 of 0 rows, test 0 "
          "of 0 rows; windows per document: train mean 2.00, p90 3, max 3, validation none, "
          "test none; ") in summary
  examples, _ = read_examples(out, "train")
  assert examples == {"q1": ([2] + [34] * 14 + [3], [1]), "q2": ([2, 34, 35, 3], [0]),
                      "q3": ([2] + [35] * 10 + [3], [0])}
  manifest = schema.read_manifest(out)
  assert manifest.max_seq_length == 8  # the window: the model's input length
  assert manifest.chunking == {"chunk_length": 8, "chunk_overlap": 2, "max_chunks": 3,
                               "max_pieces": 14}
  train = manifest.splits["train"]
  assert (train.truncated, train.truncated_pieces["max"], train.token_length["max"]) == (1, 66, 82)
  # 80 pieces: 3 windows (capped); 2 pieces: 1; 10 pieces: 2.
  assert train.windows == {"mean": 2.0, "p50": 2, "p90": 3, "p95": 3, "p99": 3, "max": 3}
  assert manifest.splits["test"].windows == dict.fromkeys(train.windows)  # empty split
