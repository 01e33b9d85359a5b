"""Documents longer than the window (issue 38), served: the Beam preprocessing job's chunked
records, the export's raw-text and record signatures, scoring.run and serving.predict agree.

One tiny random chunked export per module (mean pooling over windows of 10 ids), made the way
trainer/export_step.py makes it: the TextEncoder's max_seq_length is the data's stored cap + 2.
The CSV goes through the real preprocess.run --max_chunks (DirectRunner, offline).
"""
import csv
import dataclasses
import glob
import json
import os

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from bertcore import schema
from bertcore import tokenization
from bertcore import windows
from preprocess import run as preprocess_run
from scoring import run as score_run
from serving import export_info
from serving import predict
from trainer import export
from trainer import model as model_lib

GEOMETRY = windows.Geometry(chunk_length=10, chunk_overlap=2, max_chunks=6)  # 38 pieces
WINDOW_PIECES = GEOMETRY.window_pieces  # 8
# Word pieces per document: short ones, one at each window boundary, up to 10x the window
# (past the 38 stored pieces, so the cap applies too).
LENGTHS = [1, 3, 8, 9, 14, 15, 20, 37, 38, 39, 45, 60, 80, 2, 26, 33]
EMPTY_ID = "empty"  # only format characters: no word piece, rejected as empty_text


def document(length, rng):
  """A text of `length` one-piece words of the fixture vocabulary (mixed case: lower_case)."""
  words = [fx.VOCAB[i] for i in rng.randint(4, len(fx.VOCAB), size=length)]
  return " ".join(w.upper() if k % 5 == 0 else w for k, w in enumerate(words))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """-> dict(csv, data_dir, export_dir, texts {id: text}): the CSV, its chunked data dir and
  a chunked export of a random tiny encoder (configs/tiny.py, chunk_pooling=mean)."""
  root = str(tmp_path_factory.mktemp("long_documents"))
  vocab_path = fx.write_vocab(root)
  rng = np.random.RandomState(0)
  texts = {f"d{i:02d}": document(n, rng) for i, n in enumerate(LENGTHS)}
  texts[EMPTY_ID] = "\u200b\u200b"
  csv_path = os.path.join(root, "docs.csv")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["id", "text"])
    writer.writerows(texts.items())
  data_dir = os.path.join(root, "data")
  preprocess_run.run([f"--input={csv_path}", f"--output_dir={data_dir}",
                      f"--vocab_file={vocab_path}", "--id_column=id", "--text_column=text",
                      "--label_column=", f"--max_seq_length={GEOMETRY.chunk_length}",
                      f"--max_chunks={GEOMETRY.max_chunks}",
                      f"--chunk_overlap={GEOMETRY.chunk_overlap}", "--train_fraction=0",
                      "--validation_fraction=0", "--num_shards=2"])
  manifest = schema.read_manifest(data_dir)
  config = fx.tiny_config(root, **{"model.chunk_pooling": "mean"})
  classifier, _ = model_lib.build_classifier(
      config, dataclasses.replace(manifest, labels=["0", "1"]))
  # As the trainer's export step: whole documents up to the stored cap, cut in-graph.
  text_encoder = tokenization.TextEncoder(fx.VOCAB, True, GEOMETRY.max_pieces + 2)
  export_dir = export.export_saved_model(
      classifier, text_encoder, ["0", "1"], "binary", 0.5, os.path.join(root, "export"),
      vocab_path, geometry=GEOMETRY, chunk_pooling="mean")
  return dict(csv=csv_path, data_dir=data_dir, export_dir=export_dir, texts=texts,
              manifest=manifest)


def read_records(data_dir):
  """-> serialized records of the data dir's test split, in shard order."""
  paths = sorted(glob.glob(os.path.join(data_dir, "test", "*.tfrecord*")))
  return [r.numpy() for r in tf.data.TFRecordDataset(paths)]


def test_records_and_raw_text_give_the_same_windows_and_probabilities(served):
  manifest = served["manifest"]
  assert manifest.chunking == GEOMETRY.to_json()  # the data dir records its geometry
  assert manifest.rows_rejected == {"empty_text": 1}
  assert manifest.splits["test"].rows == len(LENGTHS)
  loaded = tf.saved_model.load(served["export_dir"])
  metadata = export_info.read_metadata(served["export_dir"])
  assert metadata["max_seq_length"] == GEOMETRY.max_pieces + 2
  assert metadata["chunking"] == dict(GEOMETRY.to_json(), pooling="mean")

  records = read_records(served["data_dir"])
  parsed = schema.parse_examples(tf.constant(records))
  ids = [x.decode() for x in parsed[schema.EXAMPLE_ID].numpy()]
  assert sorted(ids) == sorted(k for k in served["texts"] if k != EMPTY_ID)
  lengths = parsed[schema.INPUT_IDS].row_lengths().numpy()
  # Records hold whole documents (longer than a window), capped at the stored pieces.
  assert lengths.max() == GEOMETRY.max_pieces + 2 and (lengths > GEOMETRY.chunk_length).sum() > 5

  from_records = loaded.signatures["serve_examples"](examples=tf.constant(records))
  assert [x.decode() for x in from_records["example_id"].numpy()] == ids
  texts = [served["texts"][i] for i in ids]
  from_text = loaded.signatures["serving_default"](text=tf.constant(texts))
  by_record = from_records["probabilities"].numpy()
  np.testing.assert_allclose(by_record, from_text["probabilities"].numpy(), atol=1e-5)
  assert by_record.max() - by_record.min() > 1e-3  # documents differ: the check can fail

  # The windows: cut from the records' ids and from the export's own tokenization of the text.
  encoder = tokenization.TextEncoder(
      tokenization.load_vocab(os.path.join(served["export_dir"], "assets", "vocab.txt")),
      metadata["lower_case"], metadata["max_seq_length"], metadata["truncation"])
  text_ids, _, _ = encoder.encode(tf.constant(texts))
  from_records_windows = windows.cut(parsed[schema.INPUT_IDS], GEOMETRY).to_list()
  assert from_records_windows == windows.cut(text_ids, GEOMETRY).to_list()
  by_id = dict(zip(ids, from_records_windows))
  assert len(by_id["d12"]) == GEOMETRY.max_chunks  # 80 pieces: capped at 6 windows
  assert len(by_id["d00"]) == 1 and len(by_id["d03"]) == 2  # 1 and 9 pieces


def read_predictions(output_dir):
  """-> {id: row} of scoring.run's CSV shards."""
  rows = []
  for path in sorted(glob.glob(os.path.join(output_dir, "predictions-*.csv"))):
    with open(path, newline="", encoding="utf-8") as f:
      rows += list(csv.reader(f))[1:]
  return {r[0]: r for r in rows}


def test_scoring_records_matches_predict_on_the_csv(served, tmp_path):
  predict.predict_csv(served["export_dir"], served["csv"], str(tmp_path / "predict.csv"),
                      batch_size=4, id_column="id", text_column="text", log=lambda _: None)
  with open(tmp_path / "predict.csv", newline="", encoding="utf-8") as f:
    expected = {r[0]: r for r in list(csv.reader(f))[1:]}
  assert expected[EMPTY_ID][1:] == ["", "", "empty_text"]
  manifest = score_run.run([f"--model={served['export_dir']}", f"--input={served['data_dir']}",
                            f"--output_dir={tmp_path / 'out'}", "--input_format=tfrecord",
                            "--batch_size=3", "--sort_rows=8"])
  # Records longer than the window are whole documents, none too_long.
  assert manifest["rows_rejected"] == {}
  assert manifest["rows_read"] == manifest["rows_scored"] == len(LENGTHS)
  scored = read_predictions(str(tmp_path / "out"))
  assert sorted(scored) == sorted(k for k in expected if k != EMPTY_ID)
  for example_id, row in scored.items():
    assert row[1] == expected[example_id][1] and row[3] == ""
    assert abs(float(row[2]) - float(expected[example_id][2])) <= 1e-5


def test_predict_with_a_pair_column_names_the_missing_signature(served, tmp_path):
  path = tmp_path / "pairs.csv"
  path.write_text("id,text,other\na,good w1,bad w2\n", encoding="utf-8")
  with pytest.raises(ValueError) as error:
    predict.predict_csv(served["export_dir"], str(path), str(tmp_path / "out.csv"),
                        id_column="id", text_column="text", text_pair_column="other",
                        log=lambda _: None)
  assert str(error.value) == (f"{served['export_dir']} has no serve_text_pair signature for "
                              "--text_pair_column")
  assert not os.path.exists(tmp_path / "out.csv")
  # scoring.run says the same, as its one `error:` line, before any job starts.
  with pytest.raises(SystemExit) as exit_info:
    score_run.main([f"--model={served['export_dir']}", f"--input={path}",
                    f"--output_dir={tmp_path / 'scored'}", "--id_column=id",
                    "--text_column=text", "--text_pair_column=other"])
  assert exit_info.value.code == f"error: {error.value}"
  assert not os.path.exists(tmp_path / "scored")
  assert json.load(open(os.path.join(served["export_dir"], "assets", "metadata.json")))[
      "signatures"] == ["serving_default", "serve_examples"]
