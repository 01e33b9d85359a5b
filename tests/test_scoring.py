"""scoring: the Beam RunInference scoring job against a tiny exported model (offline)."""
import csv
import dataclasses
import glob
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys

import pytest

from trainer import export  # Imports bertcore first: Keras 2 before TensorFlow.
from serving import predict
from bertcore import schema
from bertcore import wandb_mode
from preprocess import run as preprocess_run
from scoring import pipeline as pipeline_lib
from scoring import records as records_lib
from scoring import run as score_run
from serving import export_info
import tensorflow as tf

import numpy as np

import helpers  # the tiny vocabulary, classifier builder and texts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTINEL = "SENTINEL-wandb-key-5c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d"


def write_rows(path, rows):
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator="\n").writerows(rows)
  with open(path, "w", encoding="utf-8") as f:
    f.write(buffer.getvalue())


def read_shards(output_dir, suffix="csv"):
  """-> (header, rows of all shards in order, shard file names)."""
  names = sorted(os.path.basename(p) for p in glob.glob(f"{output_dir}/predictions-*.{suffix}"))
  header, rows = None, []
  for name in names:
    with open(os.path.join(output_dir, name), newline="", encoding="utf-8") as f:
      lines = list(csv.reader(f))
    header, rows = lines[0], rows + lines[1:]
  return header, rows, names


def score(model, input_path, output_dir, *flags):
  return score_run.run([f"--model={model}", f"--input={input_path}", f"--output_dir={output_dir}",
                        *flags])


TEXTS = ["why is the dog lazy?", "how, do you sleep", "the quick brown fox\njumps", "Über cat",
         helpers.LONG_TEXT, "a", "fox fox fox fox"]


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory):
  """90 rows: good ones of many lengths, plus empty texts, an extra field, a missing field."""
  path = str(tmp_path_factory.mktemp("input") / "test.csv")
  rows = [["qid", "question_text"]]
  for i in range(90):
    text = TEXTS[i % len(TEXTS)] + " dog" * (i % 5)
    if i % 17 == 3:
      rows.append([f"q{i:03d}", "  "])
    elif i == 40:
      rows.append([f"q{i:03d}", "why", "is a dog"])
    elif i == 41:
      rows.append([f"q{i:03d}"])
    else:
      rows.append([f"q{i:03d}", text])
  write_rows(path, rows)
  return path


def test_results_match_trainer_predict(binary_model, mixed_csv, tmp_path):
  predict.predict_csv(binary_model, mixed_csv, str(tmp_path / "predict.csv"), batch_size=8,
                      log=lambda _: None)
  with open(tmp_path / "predict.csv", newline="", encoding="utf-8") as f:
    expected = list(csv.reader(f))
  manifest = score(binary_model, mixed_csv, str(tmp_path / "out"), "--batch_size=4",
                   "--sort_rows=16", "--num_shards=3")
  header, rows, names = read_shards(str(tmp_path / "out"))
  assert header == expected[0] == ["qid", "label", "probability", "error"]
  assert names == [f"predictions-0000{i}-of-00003.csv" for i in range(3)]
  by_id = {r[0]: r for r in rows}
  assert sorted(by_id) == sorted(r[0] for r in expected[1:]) and len(rows) == 90
  for want in expected[1:]:
    got = by_id[want[0]]
    assert (got[1], got[3]) == (want[1], want[3])
    if want[2]:
      assert abs(float(got[2]) - float(want[2])) <= 1e-5
    else:
      assert got[2] == ""
  # Blocks of 16 rows go to shard block % 3, each in input order.
  assert [r[0] for r in rows[:17]] == [f"q{i:03d}" for i in list(range(16)) + [48]]
  assert manifest["rows_read"] == 90 and manifest["rows_scored"] == 82
  assert manifest["rows_rejected"] == {"empty_text": 6, "wrong_column_count": 2}
  assert sum(manifest["label_histogram"].values()) == 82
  assert manifest["model"]["threshold"] == 0.5 and manifest["model"]["labels"] == ["0", "1"]
  assert len(manifest["model"]["vocab_sha256"]) == 64
  assert manifest["model"]["truncation"] == "head"
  assert [s["rows"] for s in manifest["shards"]] == [16 + 16, 16 + 16, 16 + 10]
  with open(tmp_path / "out" / "manifest.json") as f:
    assert json.load(f) == manifest
  assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json"] + names  # no temp dir left


def test_undecodable_and_empty_rows_get_an_error_row(binary_model, tmp_path):
  input_path = tmp_path / "bad.csv"
  input_path.write_bytes(b"qid,question_text\n"
                         b"a,why is the dog lazy?\n"
                         b"b,caf\xe9 \xff\n"          # not UTF-8
                         b"c,\n"
                         b"\n"                         # a blank line is not a row
                         b"d,how do you sleep\n")
  manifest = score(binary_model, str(input_path), str(tmp_path / "out"), "--num_shards=1")
  _, rows, _ = read_shards(str(tmp_path / "out"))
  assert [(r[0], r[1] != "", r[3]) for r in rows] == [
      ("a", True, ""), ("b", False, "undecodable"), ("c", False, "empty_text"), ("d", True, "")]
  assert manifest["rows_read"] == 4 and manifest["rows_scored"] == 2
  assert manifest["rows_rejected"] == {"empty_text": 1, "undecodable": 1}


def test_output_identical_for_workers_and_batch_sizes(binary_model, mixed_csv, tmp_path):
  score(binary_model, mixed_csv, str(tmp_path / "one"), "--batch_size=4", "--sort_rows=16")
  score(binary_model, mixed_csv, str(tmp_path / "two"), "--batch_size=7", "--sort_rows=16",
        "--direct_num_workers=2", "--direct_running_mode=multi_threading")
  one, two = read_shards(str(tmp_path / "one")), read_shards(str(tmp_path / "two"))
  assert one[2] == two[2] and one[0] == two[0]  # same shard files, same columns
  assert [r[:2] + r[3:] for r in one[1]] == [r[:2] + r[3:] for r in two[1]]
  np.testing.assert_allclose([float(r[2] or "nan") for r in one[1]],
                             [float(r[2] or "nan") for r in two[1]], atol=1e-6)


@pytest.mark.slow
def test_output_identical_with_two_worker_processes(binary_model, mixed_csv, tmp_path):
  score(binary_model, mixed_csv, str(tmp_path / "one"), "--batch_size=4", "--sort_rows=16")
  score(binary_model, mixed_csv, str(tmp_path / "two"), "--batch_size=4", "--sort_rows=16",
        "--direct_num_workers=2", "--direct_running_mode=multi_processing")
  one, two = read_shards(str(tmp_path / "one")), read_shards(str(tmp_path / "two"))
  assert one[2] == two[2]
  assert [r[:2] + r[3:] for r in one[1]] == [r[:2] + r[3:] for r in two[1]]
  np.testing.assert_allclose([float(r[2] or "nan") for r in one[1]],
                             [float(r[2] or "nan") for r in two[1]], atol=1e-6)


def test_jsonl_and_row_numbers(binary_model, tmp_path):
  input_path = str(tmp_path / "in.csv")
  write_rows(input_path, [["text"], ["why is the dog lazy?"], [""], ["cat"]])
  score(binary_model, input_path, str(tmp_path / "out"), "--id_column=", "--text_column=text",
        "--output_format=jsonl", "--num_shards=2", "--sort_rows=2",
        "--model_threads=1")  # in-process runner: TF's pools exist already, kept as they are
  lines = []
  for name in ("predictions-00000-of-00002.jsonl", "predictions-00001-of-00002.jsonl"):
    with open(tmp_path / "out" / name, encoding="utf-8") as f:
      lines += [json.loads(line) for line in f]
  assert [(x["row"], x["error"]) for x in lines] == [("1", ""), ("2", "empty_text"), ("3", "")]
  assert set(lines[0]) == {"row", "label", "probability", "error"}


def test_not_an_export_fails_in_one_line_before_the_pipeline(tmp_path, mixed_csv, capsys):
  os.makedirs(tmp_path / "checkpoints")
  with pytest.raises(SystemExit) as exit_info:
    score_run.main([f"--model={tmp_path / 'checkpoints'}", f"--input={mixed_csv}",
                    f"--output_dir={tmp_path / 'out'}"])
  message = str(exit_info.value.code)
  assert message.startswith("error: ") and "is not a model exported by trainer.export" in message
  assert "\n" not in message
  assert not os.path.exists(tmp_path / "out")  # nothing started


def test_missing_column_fails_in_one_line(binary_model, mixed_csv, tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    score_run.main([f"--model={binary_model}", f"--input={mixed_csv}", "--text_column=body",
                    f"--output_dir={tmp_path / 'out'}"])
  assert str(exit_info.value.code) == (f"error: {mixed_csv}: column 'body' is not in the header "
                                       "['qid', 'question_text']")


def test_a_failed_run_leaves_no_complete_looking_output(binary_model, mixed_csv, tmp_path):
  out = tmp_path / "out"
  score(binary_model, mixed_csv, str(out), "--num_shards=2")
  assert (out / "manifest.json").exists()
  # An export whose graph is unreadable passes the metadata check; loading fails on the worker.
  broken = str(tmp_path / "broken")
  shutil.copytree(binary_model, broken)
  with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
    f.write(b"not a SavedModel")
  with pytest.raises(Exception):
    score(broken, mixed_csv, str(out), "--num_shards=2")
  assert os.listdir(out) == []  # old manifest and shards removed first, temp dir cleaned up


def test_part_is_refused_when_rows_are_missing(tmp_path):
  write = pipeline_lib.WritePart(str(tmp_path), ["qid", "label", "probability", "error"], "csv")
  write.setup()
  row = pipeline_lib.ScoreRow((0, 0), 0, 2, 1, "a", "text", "", None)
  write.process(pipeline_lib.inference_base.PredictionResult(row, ("1", [0.9])))
  end = pipeline_lib.ScoreRow((0, 0), -1, 0, 2, "", "", "", pipeline_lib.END)
  with pytest.raises(RuntimeError, match="1 rows written, 2 read"):
    write.process(pipeline_lib.inference_base.PredictionResult(end, None))
  assert not glob.glob(str(tmp_path / "part-*.json"))


def wandb_records(run_dir):
  """The records of an offline W&B run (its run-<id>.wandb file, W&B's LevelDB-style log:
  32 KiB blocks of records with a 7-byte header: CRC, length, kind full/first/middle/last)."""
  from wandb.proto import wandb_internal_pb2
  path, = glob.glob(os.path.join(run_dir, "run-*.wandb"))
  data = open(path, "rb").read()
  assert data[:4] == b":W&B"
  block, pos, payloads, pending = 32768, 7, [], b""
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # A block's tail too short for a header is padding.
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
    if kind in (1, 4):  # full, last
      payloads.append(pending + payload if kind == 4 else payload)
    elif kind in (2, 3):  # first, middle
      pending = payload if kind == 2 else pending + payload
  return [wandb_internal_pb2.Record.FromString(p) for p in payloads]


def logged_artifacts(wandb_dir):
  """{artifact name: (type, metadata dict, content paths)} logged by the offline runs there."""
  out = {}
  for run_dir in glob.glob(os.path.join(wandb_dir, "offline-run-*")):
    for record in wandb_records(run_dir):
      if record.WhichOneof("record_type") == "artifact":
        a = record.artifact
        out[a.name] = (a.type, json.loads(a.metadata or "{}"),
                       sorted(c.path for c in a.manifest.contents))
  return out


def score_with_wandb_offline(model_dir, input_path, tmp_path, *flags):
  """scoring.run in a subprocess, W&B offline with a sentinel API key; -> (stdout, the run dir,
  its logged artifacts). Asserts the job succeeded and the key appears nowhere."""
  env = dict(os.environ, WANDB_MODE="offline", WANDB_API_KEY=SENTINEL, WANDB_DIR=str(tmp_path),
             HOME=str(tmp_path), PYTHONPATH=os.pathsep.join([REPO, os.environ.get(
                 "PYTHONPATH", "")]))
  proc = subprocess.run(
      [sys.executable, "-m", "scoring.run", f"--model={model_dir}", f"--input={input_path}",
       f"--output_dir={tmp_path / 'scores'}", "--wandb_project=scoring-test", "--num_shards=1",
       *flags], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "warning" not in proc.stderr  # W&B logging worked (it never fails the job)
  assert SENTINEL not in proc.stdout + proc.stderr
  for root, _, names in os.walk(tmp_path / "wandb"):
    for name in names:
      with open(os.path.join(root, name), "rb") as f:
        assert SENTINEL.encode() not in f.read(), name
  run_dir, = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))  # the driver's one run
  return proc.stdout, run_dir, logged_artifacts(str(tmp_path / "wandb"))


def assert_predictions_lineage(run_dir, artifacts, model_dir, data_dir, rows_scored, rejected):
  """The run's only artifact is the predictions, naming the model and data artifacts that the
  trainer names after data_dir's manifest (config and artifact metadata)."""
  digest = wandb_mode.dataset_digest(schema.read_manifest(data_dir))
  kind, metadata, contents = artifacts["predictions-scores"]
  assert kind == "predictions" and list(artifacts) == ["predictions-scores"]
  assert metadata["model_artifact"] == f"model-{digest}"
  assert metadata["dataset_artifact"] == f"data-{digest}"
  assert metadata["model_path"] == model_dir
  assert (metadata["rows_scored"], metadata["rows_rejected"]) == (rows_scored, rejected)
  assert contents == ["manifest.json", "predictions-00000-of-00001.csv"]
  config, = [r.run.config for r in wandb_records(run_dir)
             if r.WhichOneof("record_type") == "run"]
  values = {item.key: json.loads(item.value_json) for item in config.update}
  assert values["model_artifact"] == f"model-{digest}"
  assert values["dataset_artifact"] == f"data-{digest}"
  return digest


def test_wandb_offline_logs_the_lineage_without_printing_the_key(records_dir, mixed_csv,
                                                                  tmp_path):
  # The export records its training data as trainer/export_step.py does (extra_metadata);
  # here the data is mixed_csv preprocessed. The trainer's own export: the slow test below.
  vocab_path, text_encoder = helpers.tiny_setup(str(tmp_path))
  model_dir = str(tmp_path / "export")
  export.export_saved_model(helpers.build_classifier(1), text_encoder, ["0", "1"], "binary",
                            0.5, model_dir, vocab_path,
                            extra_metadata={"training": {"data_dir": records_dir}})
  stdout, run_dir, artifacts = score_with_wandb_offline(model_dir, mixed_csv, tmp_path)
  assert "score: 90 rows read, 82 scored" in stdout
  assert_predictions_lineage(run_dir, artifacts, model_dir, records_dir, 82,
                             {"empty_text": 6, "wrong_column_count": 2})


@pytest.mark.slow
def test_wandb_offline_lineage_of_the_trainers_own_export(tmp_path):
  """preprocess.run -> `python -m trainer.task` (W&B offline) -> scoring.run (W&B offline):
  the model artifact the trainer logged is the one the predictions name."""
  import trainer_fixtures as fx
  fx.write_vocab(str(tmp_path))
  rows = [["id", "text", "label"]] + [
      [f"r{i}", f"{'good' if i % 2 else 'bad'} w{i % 26} w{(i * 7) % 26}", str(i % 2)]
      for i in range(96)]
  write_rows(str(tmp_path / "train.csv"), rows)
  data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "model")
  preprocess_run.run([f"--input={tmp_path / 'train.csv'}", f"--output_dir={data_dir}",
                      f"--vocab_file={tmp_path / 'vocab.txt'}", "--id_column=id",
                      "--text_column=text", "--label_column=label", "--num_shards=1",
                      "--max_seq_length=16", "--validation_fraction=0.2"])
  fx.write_vocab(data_dir)  # task_command checks the encoder against <data_dir>/vocab.txt
  train_dir = tmp_path / "train_wandb"
  env = fx.task_env(WANDB_MODE="offline", WANDB_DIR=str(train_dir), HOME=str(train_dir))
  proc = subprocess.run(fx.task_command(data_dir, model_dir, "--config.train.epochs=1",
                                        "--config.eval.test_split=False"),
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  input_path = str(tmp_path / "unlabeled.csv")
  write_rows(input_path, [["id", "text"], ["a", "good w1"], ["b", "bad w2 w3"], ["c", " "]])
  stdout, run_dir, artifacts = score_with_wandb_offline(
      f"{model_dir}/export", input_path, tmp_path, "--id_column=id", "--text_column=text")
  assert "score: 3 rows read, 2 scored" in stdout
  digest = assert_predictions_lineage(run_dir, artifacts, f"{model_dir}/export", data_dir, 2,
                                      {"empty_text": 1})
  # data -> model: the trainer's save run logged the model artifact named after the data.
  trainer_artifacts = logged_artifacts(str(train_dir / "wandb"))
  assert trainer_artifacts[f"model-{digest}"][0] == "model"


def test_dataflow_dry_run_renders_the_score_job(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.submit", "dataflow", "--project=proj", "--region=r1",
       "--staging_bucket=gs://bkt", "--job_name=score-quora", "--job=score", "--dry_run", "--",
       "--model=gs://bkt/export", "--input=gs://bkt/test.csv", "--output_dir=gs://bkt/pred"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  plan = json.loads(proc.stdout)
  assert plan["command"][:3] == ["python", "-m", "scoring.run"]
  assert "--setup_file=./setup.py" in plan["command"]
  assert plan["command"][-3:] == ["--model=gs://bkt/export", "--input=gs://bkt/test.csv",
                                  "--output_dir=gs://bkt/pred"]
  local = subprocess.run(
      [sys.executable, "-m", "launch.submit", "dataflow", "--project=proj", "--region=r1",
       "--staging_bucket=gs://bkt", "--job_name=score-quora", "--job=score", "--dry_run", "--",
       "--model=runs/export", "--input=gs://bkt/test.csv", "--output_dir=gs://bkt/pred"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert local.returncode == 2
  assert local.stderr.strip() == ("error: --model must be a gs:// path for a cloud run "
                                  "(got 'runs/export')")


def test_tsv_and_unescape_html_match_trainer_predict(binary_model, tmp_path):
  input_path = str(tmp_path / "in.tsv")
  texts = ["the dog&#039;s &quot;lazy&quot;", "fox &amp;\tcat", "&#32;", "two\nlines"]
  with open(input_path, "w", encoding="utf-8") as f:
    f.write("qid\tquestion_text\n" + "".join(f'q{i}\t"{t}"\n' for i, t in enumerate(texts)))
  manifest = score(binary_model, input_path, str(tmp_path / "out"), "--delimiter=tab",
                   "--unescape_html=true", "--num_shards=1", "--model_threads=1")
  assert (manifest["delimiter"], manifest["unescape_html"]) == ("\t", True)
  assert manifest["rows_rejected"] == {"empty_text": 1}
  _, rows, _ = read_shards(str(tmp_path / "out"))
  predict.predict_csv(binary_model, input_path, str(tmp_path / "p.csv"), delimiter="\t",
                      unescape_html=True, log=lambda _: None)
  with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
    expected = list(csv.reader(f))[1:]
  assert [r[0] for r in rows] == ["q0", "q1", "q2", "q3"]
  np.testing.assert_allclose([float(r[2] or "nan") for r in rows],
                             [float(r[2] or "nan") for r in expected], atol=1e-6)
  # The export records no unescape_html: the default is off, and "&#32;" is a text.
  manifest = score(binary_model, input_path, str(tmp_path / "out2"), "--delimiter=\t",
                   "--num_shards=1", "--model_threads=1")
  assert (manifest["unescape_html"], manifest["rows_rejected"]) == (False, {})


# ---------------------------------------------------------------- TFRecord input


@pytest.fixture(scope="module")
def records_dir(binary_model, mixed_csv, tmp_path_factory):
  """mixed_csv preprocessed with the model's vocabulary, every row in the test split."""
  data_dir = str(tmp_path_factory.mktemp("records") / "data")
  preprocess_run.run([f"--input={mixed_csv}", f"--output_dir={data_dir}",
                      f"--vocab_file={binary_model}/assets/vocab.txt", "--label_column=",
                      "--max_seq_length=8", "--train_fraction=0", "--validation_fraction=0",
                      "--num_shards=2"])
  return data_dir


def record_frames(path):
  """-> [(offset of the record's data, its length)] of an uncompressed TFRecord file."""
  data, frames, offset = open(path, "rb").read(), [], 0
  while offset < len(data):
    length = records_lib.HEADER.unpack_from(data, offset)[0]
    frames.append((offset + records_lib.HEADER.size, length))
    offset += records_lib.HEADER.size + length + records_lib.FOOTER.size
  return frames


@pytest.mark.parametrize("suffix,options", [(".tfrecord", None), (".tfrecord.gz", "GZIP")])
def test_record_reader_reads_what_tensorflow_writes(tmp_path, suffix, options):
  path = str(tmp_path / f"x{suffix}")
  payloads = [b"", b"a", bytes(range(256)) * 3]
  with tf.io.TFRecordWriter(path, options=options) as writer:
    for payload in payloads:
      writer.write(payload)
  assert list(records_lib.iter_records(path)) == [(p, None) for p in payloads]


def test_record_reader_skips_a_corrupt_record_and_stops_at_a_cut(tmp_path):
  path = str(tmp_path / "x.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for payload in (b"first", b"second", b"third"):
      writer.write(payload)
  data = bytearray(open(path, "rb").read())
  offset, _ = record_frames(path)[1]
  data[offset] ^= 0xFF  # a byte of the second record's data
  open(path, "wb").write(bytes(data))
  assert list(records_lib.iter_records(path)) == [
      (b"first", None), (None, "corrupt_record"), (b"third", None)]
  open(path, "wb").write(bytes(data[:-3]))  # the last record cut short
  assert list(records_lib.iter_records(path))[-1] == (None, "truncated_file")


def test_bad_records_are_named_per_record():
  def record(ids, example_id="x"):
    return schema.make_example(example_id, ids, [0] * len(ids), []).SerializeToString()
  assert records_lib.describe_record(record([2, 4, 3], "q1"), 8) == ("q1", 3, None)
  assert records_lib.describe_record(record([2] + [4] * 8 + [3]), 8) == ("x", 10, "too_long")
  assert records_lib.describe_record(b"\xff\xff not a proto", 8) == (
      "", 0, "malformed_example")
  no_ids = tf.train.Example().SerializeToString()
  assert records_lib.describe_record(no_ids, 8) == ("", 0, "malformed_example")


def test_records_score_like_the_same_rows_from_csv(binary_model, mixed_csv, records_dir,
                                                   tmp_path):
  score(binary_model, mixed_csv, str(tmp_path / "csv"), "--batch_size=4", "--sort_rows=16")
  manifest = score(binary_model, records_dir, str(tmp_path / "rec"), "--input_format=tfrecord",
                   "--batch_size=5", "--sort_rows=8")
  _, csv_rows, _ = read_shards(str(tmp_path / "csv"))
  header, rec_rows, names = read_shards(str(tmp_path / "rec"))
  assert header == ["example_id", "label", "probability", "error"]
  assert names == ["predictions-00000-of-00002.csv", "predictions-00001-of-00002.csv"]
  good = {r[0]: r for r in csv_rows if not r[3]}
  assert sorted(r[0] for r in rec_rows) == sorted(good) and len(rec_rows) == 82
  for row in rec_rows:
    assert row[1] == good[row[0]][1] and row[3] == ""
    assert abs(float(row[2]) - float(good[row[0]][2])) <= 1e-5
  assert manifest["rows_read"] == manifest["rows_scored"] == 82
  assert manifest["input_format"] == "tfrecord" and manifest["precision"] == "float32"
  # A glob of the shards, other batches, 2 workers: the same output.
  score(binary_model, f"{records_dir}/test/*.tfrecord", str(tmp_path / "glob"),
        "--input_format=tfrecord", "--batch_size=3", "--sort_rows=8", "--direct_num_workers=2",
        "--direct_running_mode=multi_threading")
  glob_rows = read_shards(str(tmp_path / "glob"))[1]
  assert [r[:2] + r[3:] for r in glob_rows] == [r[:2] + r[3:] for r in rec_rows]
  np.testing.assert_allclose([float(r[2]) for r in glob_rows], [float(r[2]) for r in rec_rows],
                             atol=1e-6)


def test_records_of_another_vocabulary_fail_in_one_line(binary_model, records_dir, tmp_path):
  data_dir = str(tmp_path / "data")
  shutil.copytree(records_dir, data_dir)
  path = os.path.join(data_dir, schema.MANIFEST)
  manifest = json.load(open(path))
  manifest["vocab_sha256"] = "f" * 64
  json.dump(manifest, open(path, "w"))
  with pytest.raises(SystemExit) as exit_info:
    score_run.main([f"--model={binary_model}", f"--input={data_dir}", "--input_format=tfrecord",
                    f"--output_dir={tmp_path / 'out'}"])
  message = str(exit_info.value.code)
  assert message == (f"error: {data_dir} was tokenized with another vocabulary than the model "
                     f"{binary_model} (vocab_sha256 ffffffffffff... vs "
                     f"{manifest_vocab(binary_model)[:12]}...); preprocess the data with the "
                     "model's vocabulary, or score the CSV instead")
  assert not os.path.exists(tmp_path / "out")  # nothing started


def manifest_vocab(model_dir):
  return export_info.read_metadata(model_dir)["vocab_sha256"]


def test_a_corrupt_record_is_counted_not_fatal(binary_model, records_dir, tmp_path):
  data_dir = str(tmp_path / "data")
  shutil.copytree(records_dir, data_dir)
  shard = os.path.join(data_dir, "test", "test-00000-of-00002.tfrecord")
  offset, length = record_frames(shard)[2]
  data = bytearray(open(shard, "rb").read())
  data[offset + length // 2] ^= 0xFF
  open(shard, "wb").write(bytes(data))
  manifest = score(binary_model, data_dir, str(tmp_path / "out"), "--input_format=tfrecord")
  _, rows, _ = read_shards(str(tmp_path / "out"))
  assert rows[2] == ["", "", "", "corrupt_record"]
  assert manifest["rows_read"] == 82 and manifest["rows_scored"] == 81
  assert manifest["rows_rejected"] == {"corrupt_record": 1}


@pytest.mark.slow
def test_bfloat16_is_opt_in_and_close_to_float32(binary_model, mixed_csv, tmp_path):
  # A subprocess: the bfloat16 rewrite is a process-wide TensorFlow setting.
  env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=os.pathsep.join(
      [REPO, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run(
      [sys.executable, "-m", "scoring.run", f"--model={binary_model}", f"--input={mixed_csv}",
       f"--output_dir={tmp_path / 'bf16'}", "--num_shards=1", "--bfloat16"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  score(binary_model, mixed_csv, str(tmp_path / "f32"), "--num_shards=1")
  bf16, f32 = read_shards(str(tmp_path / "bf16"))[1], read_shards(str(tmp_path / "f32"))[1]
  assert [r[0] for r in bf16] == [r[0] for r in f32]
  got = np.array([float(r[2] or "nan") for r in bf16])
  want = np.array([float(r[2] or "nan") for r in f32])
  # The tiny model's weights are large (0.5 / 2.0 init) and move its outputs more than real
  # MiniLM's do; the flag must change them, but a little.
  assert 1e-5 < np.nanmax(np.abs(got - want)) < 5e-2
  with open(tmp_path / "bf16" / "manifest.json") as f:
    assert json.load(f)["precision"] == "bfloat16"


def test_flags_become_one_frozen_settings_object():
  settings, beam_args = score_run.parse_settings(
      ["--model=m/", "--input=a.csv", "--output_dir=o/", "--delimiter=tab",
       "--runner=DirectRunner"])
  assert (settings.model, settings.input, settings.output_dir, settings.delimiter) == (
      "m", ("a.csv",), "o", "\t")
  assert (settings.num_shards, settings.unescape_html, settings.wandb_project) == (8, None, None)
  assert beam_args == ["--runner=DirectRunner"]
  with pytest.raises(dataclasses.FrozenInstanceError):
    settings.num_shards = 1  # pylint: disable=assigning-non-slot
  assert pickle.loads(pickle.dumps(settings)) == settings  # it travels to the workers
  settings, _ = score_run.parse_settings(["--model=m", "--input=d", "--output_dir=o",
                                          "--input_format=tfrecord", "--unescape_html=false"])
  assert (settings.num_shards, settings.unescape_html) == (1, False)
