"""serving/: one row reader and one set of reject reasons for preprocess.run, serving.predict and
scoring.run; the import graph that keeps Model Garden off a scoring worker."""
import collections
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bertcore import cli  # Imports bertcore first: Keras 2 before TensorFlow.
from bertcore import row_checks
from preprocess import run as preprocess_run
from scoring import run as score_run
from serving import export_info
from serving import inputs
from serving import predict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One file, UTF-8 with a BOM and CRLF, every kind of bad row the three commands share. Header
# qid,question_text,note; read with --unescape_html. (data row, bytes, reason or None = scored)
BAD_FILE = [
    (0, b"\xef\xbb\xbfqid,question_text,note\r\n", None),
    (1, b"q01,the dog,x\r\n", None),
    (2, b'q02,"the, quick fox",x\r\n', None),                   # quoted comma
    (3, b'q03,"why is a ""lazy"" dog",x\r\n', None),            # quotes in quotes
    (4, b'q04,"how do\r\nyou sleep",x\r\n', None),              # a newline in the text
    (5, b"q05,caf\xe9 dog,x\r\n", "undecodable"),               # not UTF-8, in the text
    (6, b"\xff\xfe,the cat,x\r\n", "undecodable"),              # ... in the id
    (7, b"q07,the\x00dog,x\r\n", "nul_character"),              # NUL in the text
    (8, b"q08,the cat,x\x00\r\n", "nul_character"),             # ... in another column
    (9, b"q09,the cat\r\n", "wrong_column_count"),              # a field short
    (10, b"q10,the cat,x,y\r\n", "wrong_column_count"),         # a field too many
    (11, b"q11,why, is a dog,x\r\n", "wrong_column_count"),     # an unquoted comma
    (12, b",the cat,x\r\n", "missing_id"),                      # empty id
    (13, b'"  ",the cat,x\r\n', "missing_id"),                  # whitespace id
    (14, b"q14,,x\r\n", "empty_text"),                          # empty text
    (15, b'q15,"   ",x\r\n', "empty_text"),                     # whitespace text
    (16, b'q16,"  \r\n  ",x\r\n', "empty_text"),                # whitespace over two lines
    (17, b'q17,"\x01\x02",x\r\n', "empty_text"),                # no word piece at all
    (18, b"q18,&#32;,x\r\n", "empty_text"),                     # a space once unescaped
    (19, b"q01,the cat sleeps,x\r\n", "duplicate_id"),          # q01 was scored
    (20, b" q02 ,a fox,x\r\n", "duplicate_id"),                 # ids are stripped
    (21, b"q07,the lazy cat,x\r\n", None),                      # q07 was rejected: not a repeat
    (None, b"\r\n", None),                                      # a blank line is not a row
    (22, b"q22,the dog&#039;s ?,x\r\n", None),                  # unescaped: dog's
    (23, b'q23,"unterminated quote,x\r\nq24,swallowed,x\r\n', "wrong_column_count"),
]
EXPECTED = [(row, reason) for row, _, reason in BAD_FILE if row and reason]


def test_the_bad_file_has_every_shared_reason_but_malformed_csv():
  # malformed_csv needs a record the csv module refuses (a field over csv_source's 256 MiB
  # limit); tests/test_preprocess_rows.py covers it. The label reasons are preprocessing's own.
  assert len(EXPECTED) >= 15
  shared = set(row_checks.REJECT_REASONS) - {"malformed_csv", "missing_label", "unknown_label"}
  assert {reason for _, reason in EXPECTED} == shared


@pytest.fixture(scope="module")
def served(binary_model, tmp_path_factory):
  """The bad file, the session's tiny export, and the file through predict and scoring."""
  root = tmp_path_factory.mktemp("serving")
  input_path = root / "bad.csv"
  input_path.write_bytes(b"".join(data for _, data, _ in BAD_FILE))
  model_dir = binary_model
  summary = predict.predict_csv(model_dir, str(input_path), str(root / "predict.csv"),
                                batch_size=4, unescape_html=True, log=lambda _: None)
  manifest = score_run.run([f"--model={model_dir}", f"--input={input_path}",
                            f"--output_dir={root / 'score'}", "--unescape_html=true",
                            "--num_shards=2", "--sort_rows=4", "--batch_size=3"])
  return root, model_dir, summary, manifest


def output_errors(paths):
  """[(data row, error)] of the rows with an error, from prediction CSVs in order."""
  rows = []
  for path in paths:
    with open(path, newline="", encoding="utf-8") as f:
      rows += list(csv.DictReader(f))
  return rows, [(i, r["error"]) for i, r in enumerate(rows, 1) if r["error"]]


def test_preprocess_predict_and_scoring_reject_the_same_rows_for_the_same_reasons(served):
  root, model_dir, summary, manifest = served
  data_dir = str(root / "data")
  data = preprocess_run.run([f"--input={root / 'bad.csv'}", f"--output_dir={data_dir}",
                             f"--vocab_file={model_dir}/assets/vocab.txt", "--label_column=",
                             "--unescape_html=true", "--max_seq_length=8", "--num_shards=1"])
  counts = dict(sorted(collections.Counter(reason for _, reason in EXPECTED).items()))
  # Counts: preprocessing's manifest, predict's summary, scoring's manifest.
  assert data.rows_rejected == summary["rows_rejected"] == manifest["rows_rejected"] == counts
  assert data.rows_read == summary["rows_read"] == manifest["rows_read"] == 23
  assert data.rows_written == summary["rows_scored"] == manifest["rows_scored"] == 6
  # Rows: preprocessing's rejected.jsonl (by file line) and both outputs (by data row).
  with open(os.path.join(data_dir, "rejected.jsonl"), encoding="utf-8") as f:
    dead_letter = sorted((r["line"], r["reason"]) for r in map(json.loads, f))
  predicted, predict_errors = output_errors([root / "predict.csv"])
  scored, score_errors = output_errors(sorted((root / "score").glob("predictions-*.csv")))
  assert [reason for _, reason in dead_letter] == [reason for _, reason in EXPECTED]
  assert predict_errors == EXPECTED
  # Scoring's shards hold blocks of 4 rows, block b in shard b % 2: back to input order.
  order = sorted(range(23), key=lambda i: ((i // 4) % 2, i))
  assert sorted((order[i - 1] + 1, error) for i, error in score_errors) == EXPECTED
  # Same ids in both outputs (stripped; undecodable bytes as \xNN); kept ones are predicted.
  by_row = {order[i] + 1: r for i, r in enumerate(scored)}
  assert [r["qid"] for r in predicted] == [by_row[i]["qid"] for i in range(1, 24)]
  assert predicted[5]["qid"] == "\\xff\\xfe" and predicted[19]["qid"] == "q02"
  assert all(r["label"] for r in predicted if not r["error"])


def test_the_reader_counts_word_pieces_with_the_exports_tokenizer(served, tmp_path):
  _, model_dir, _, _ = served
  path = tmp_path / "in.tsv"
  path.write_text("id\ttext\n"
                  "a\tthe quick brown fox\n"    # 4 pieces
                  "b\tjumps\n"                  # jump ##s: 2
                  "c\txxxxxxxxxxxxxxxx\n"       # one [UNK]
                  "d\t\x01\n"                   # no piece: empty_text
                  "a\tthe dog\n", encoding="utf-8")
  rows = list(inputs.iter_rows(str(path), "utf-8", "\t", inputs.Columns("id", "text", None),
                               count_pieces=export_info.WordPieceCounter(model_dir)))
  assert [(r.row_id, r.length, r.problem) for r in rows] == [
      ("a", 4, None), ("b", 2, None), ("c", 1, None), ("d", 0, "empty_text"),
      ("a", 0, "duplicate_id")]
  numbered = list(inputs.iter_rows(str(path), "utf-8", "\t", inputs.Columns(None, "text", None)))
  assert [(r.row_id, r.length, r.problem) for r in numbered][:2] == [("1", 19, None),
                                                                    ("2", 5, None)]
  with pytest.raises(ValueError, match=r"in.tsv: column 'qid' is not in the header \['id', "
                                       r"'text'\]; pass --id_column= to number the rows"):
    inputs.read_layout(str(path), "utf-8", "\t", inputs.Columns("qid", "text", None))


def test_scoring_and_predict_import_no_model_garden_and_scoring_no_trainer():
  code = ("import sys, scoring.run, scoring.job, scoring.tracking; "
          "scoring_modules = set(sys.modules); import serving.predict, trainer.predict; "
          "print(sorted({m.split('.')[0] for m in scoring_modules} & "
          "{'official', 'trainer', 'preprocess', 'tensorflow_models'}), "
          "'official' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["[]", "False"]


def test_predict_and_scoring_refuse_an_incomplete_export_with_the_same_line(served, tmp_path):
  root, model_dir, _, _ = served
  broken = str(tmp_path / "export")
  shutil.copytree(model_dir, broken)
  os.remove(os.path.join(broken, "saved_model.pb"))  # as a crash mid-copy would leave it
  message = f"{broken} has export metadata but no saved_model.pb: an incomplete export"
  with pytest.raises(ValueError) as info:
    predict.predict_csv(broken, str(root / "bad.csv"), str(tmp_path / "p.csv"),
                        log=lambda _: None)
  assert str(info.value) == message
  with pytest.raises(SystemExit) as exit_info:
    score_run.main([f"--model={broken}", f"--input={root / 'bad.csv'}",
                    f"--output_dir={tmp_path / 'out'}"])
  assert exit_info.value.code == f"error: {message}"
  assert not os.path.exists(tmp_path / "p.csv") and not os.path.exists(tmp_path / "out")


def test_the_shared_flags_are_declared_once_with_one_default():
  preprocess_args = preprocess_run.make_parser().parse_args(["--input=x", "--output_dir=o"])
  scoring_args = score_run.make_parser().parse_args(["--model=m", "--input=x", "--output_dir=o"])
  for name in cli.CSV_FLAGS + ("wandb_project",):
    expected = cli.SHARED_FLAGS[name].default
    assert getattr(preprocess_args, name) == getattr(scoring_args, name) == expected, name
  for name in cli.CSV_FLAGS:
    assert predict.FLAGS[name].default == cli.SHARED_FLAGS[name].default, name
  assert (preprocess_args.id_column, preprocess_args.truncation) == ("qid", "head")
  # The same spelling of a boolean in each kind of parser: --unescape_html=true on both.
  assert score_run.make_parser().parse_args(
      ["--model=m", "--input=x", "--output_dir=o", "--unescape_html=true"]).unescape_html is True
  predict.FLAGS["unescape_html"].parse("true")
  assert predict.FLAGS["unescape_html"].value is True
  predict.FLAGS["unescape_html"].unparse()


def output_rows(paths):
  """{(qid, error): row} of prediction CSVs (an id repeats only with a different error)."""
  rows = []
  for path in paths:
    with open(path, newline="", encoding="utf-8") as f:
      rows += list(csv.DictReader(f))
  return {(r["qid"], r["error"]): r for r in rows}


def test_predict_and_scoring_flag_the_same_low_confidence_rows(served, tmp_path):
  root, model_dir, _, _ = served
  plain = output_rows([root / "predict.csv"])
  tops = {qid: max(float(r["probability"]), 1 - float(r["probability"]))
          for qid, r in plain.items() if not r["error"]}
  # A floor between two rows' top probabilities: some rows fall below it, some do not.
  ordered = sorted(set(tops.values()))
  floor = (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
  low = {qid for qid, top in tops.items() if top < floor}
  assert 0 < len(low) < len(tops)
  summary = predict.predict_csv(model_dir, str(root / "bad.csv"), str(tmp_path / "predict.csv"),
                                batch_size=4, unescape_html=True, min_confidence=floor,
                                log=lambda _: None)
  manifest = score_run.run([f"--model={model_dir}", f"--input={root / 'bad.csv'}",
                            f"--output_dir={tmp_path / 'score'}", "--unescape_html=true",
                            "--num_shards=2", "--sort_rows=4", "--batch_size=3",
                            f"--min_confidence={floor}"])
  predicted = output_rows([tmp_path / "predict.csv"])
  scored = output_rows(sorted((tmp_path / "score").glob("predictions-*.csv")))
  for rows in (predicted, scored):
    assert {qid for qid, r in rows.items() if r["flag"] == "low_confidence"} == low
    for qid, r in rows.items():
      # Probabilities and errors as without the floor (scoring's batches pad differently: up
      # to the last float32 bit); only the label of low rows is gone.
      assert r["error"] == plain[qid]["error"]
      if not r["error"]:
        assert float(r["probability"]) == pytest.approx(float(plain[qid]["probability"]), abs=1e-6)
      assert r["label"] == ("" if qid in low else plain[qid]["label"])
      assert r["flag"] in ("", "low_confidence")
  assert summary["rows_low_confidence"] == manifest["rows_low_confidence"] == len(low)
  assert manifest["min_confidence"] == floor and manifest["output_columns"][-1] == "flag"
  assert sum(manifest["label_histogram"].values()) == len(tops) - len(low)
  assert manifest["model"]["temperature"] == 1.0


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_a_min_confidence_outside_zero_one_is_one_error_line(served, tmp_path, value):
  root, model_dir, _, _ = served
  message = f"--min_confidence must be in (0, 1), got {float(value)}"
  with pytest.raises(ValueError) as info:
    predict.make_settings(model_dir, str(root / "bad.csv"), str(tmp_path / "p.csv"),
                          min_confidence=float(value))
  assert str(info.value) == message
  with pytest.raises(SystemExit) as exit_info:
    score_run.main([f"--model={model_dir}", f"--input={root / 'bad.csv'}",
                    f"--output_dir={tmp_path / 'out'}", f"--min_confidence={value}"])
  assert exit_info.value.code == f"error: {message}"
  assert not os.path.exists(tmp_path / "out")


def test_the_top_probability_of_each_head():
  from serving import outputs
  assert outputs.top_probability([0.2], "binary") == np.float32(0.8)
  assert outputs.top_probability([0.1, 0.7, 0.2], "multiclass") == np.float32(0.7)
  # Multilabel: the least sure label decision.
  assert outputs.top_probability([0.95, 0.3, 0.01], "multilabel") == np.float32(0.7)
  floor = outputs.ConfidenceFloor("binary", 0.9)
  # A probability written as 0.9 (float32) reaches a 0.9 floor: compared in float32.
  assert outputs.apply_floor(("1", np.float32([0.9])), floor)[1] == ""
  (label, probabilities), flag = outputs.apply_floor(("1", np.float32([0.89])), floor)
  assert (label, flag) == ("", "low_confidence") and probabilities == np.float32(0.89)
  assert outputs.apply_floor(("1", [0.5]), None) == (("1", [0.5]), None)


@pytest.mark.parametrize("recorded, flag, native, dtype, warns", [
    (None, False, False, "float32", False),          # an export that records nothing
    ("float32", False, False, "float32", False),
    ("float32", True, False, "bfloat16", True),      # --bfloat16 where bfloat16 is emulated
    ("float32", True, True, "bfloat16", False),
    ("bfloat16", False, False, "bfloat16", True),    # config.export_precision=bfloat16
    ("bfloat16", False, True, "bfloat16", False)])
def test_the_served_precision_and_the_emulation_warning(recorded, flag, native, dtype, warns):
  metadata = {} if recorded is None else {"compute_dtype": recorded}
  assert export_info.compute_dtype(metadata, flag) == dtype
  warning = export_info.emulation_warning(metadata, flag, native=native)
  assert (warning is not None) == warns
  if warns:
    assert warning.startswith("warning: ") and "\n" not in warning
    assert ("--bfloat16" in warning) == flag
