"""serving.predict (and its former name trainer.predict): batch inference on a CSV against a
tiny exported model."""
import collections
import csv
import io
import os
import subprocess
import sys
import types

import pytest

from trainer import export  # Imports bertcore first: Keras 2 before TensorFlow.
from serving import predict
from bertcore import cli
from serving import export_info
from serving import inputs

import numpy as np
import tensorflow as tf

import helpers  # the tiny vocabulary, classifier builder and texts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_csv(path, rows, bom=False, encoding="utf-8"):
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator="\n").writerows(rows)
  with open(path, "wb") as f:
    f.write((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode(encoding))


def read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


TEXTS = ["why is the dog lazy?", "how, do you sleep", "the quick brown fox\njumps",
         "Über cat", helpers.LONG_TEXT, "a", "fox fox fox fox"]


def test_predictions_match_the_export(binary_model, tmp_path):
  # 70 rows, batch 4: several batches and two length-sorted chunks (4 * 16 = 64 rows).
  texts = [TEXTS[i % len(TEXTS)] + " dog" * (i % 5) for i in range(70)]
  rows = [["qid", "question_text"]] + [[f"q{i:03d}", t] for i, t in enumerate(texts)]
  input_path, output_path = str(tmp_path / "test.csv"), str(tmp_path / "out" / "pred.csv")
  write_csv(input_path, rows, bom=True)  # a UTF-8 byte-order mark, as Excel writes
  lines = []
  summary = predict.predict_csv(binary_model, input_path, output_path, batch_size=4,
                                log=lines.append)
  assert summary["rows_read"] == summary["rows_scored"] == 70
  assert summary["rows_rejected_total"] == 0 and summary["rows_rejected"] == {}
  assert lines[-1].startswith("predict: done: 70 rows, 70 predicted") and "rows/s" in lines[-1]
  out = read_csv(output_path)
  assert out[0] == ["qid", "label", "probability", "error"]
  assert [r[0] for r in out[1:]] == [f"q{i:03d}" for i in range(70)]  # input order kept
  expected = tf.saved_model.load(binary_model).signatures["serving_default"](
      text=tf.constant(texts))
  np.testing.assert_allclose([float(r[2]) for r in out[1:]],
                             expected["probabilities"].numpy(), atol=1e-6)
  assert [r[1] for r in out[1:]] == [x.decode() for x in expected["label"].numpy()]
  assert {r[3] for r in out[1:]} == {""}
  assert sorted(os.listdir(tmp_path / "out")) == ["pred.csv"]  # no temporary file left


def test_predictions_follow_the_export_truncation(tmp_path):
  """predict tokenizes in the export's graph, so a tail export reads the texts' tails."""
  from bertcore import tokenization
  vocab_path = helpers.write_vocab(str(tmp_path))
  text_encoder = tokenization.TextEncoder(helpers.VOCAB, True, helpers.MAX_SEQ_LENGTH,
                                          "tail")
  classifier = helpers.build_classifier(1)
  export_dir = str(tmp_path / "export")
  export.export_saved_model(classifier, text_encoder, ["0", "1"], "binary", 0.5, export_dir,
                            vocab_path)
  texts = [helpers.LONG_TEXT, helpers.VERY_LONG_TEXT, "a cat"]
  input_path, output_path = str(tmp_path / "in.csv"), str(tmp_path / "out.csv")
  write_csv(input_path, [["qid", "question_text"]] + [[f"q{i}", t] for i, t in enumerate(texts)])
  predict.predict_csv(export_dir, input_path, output_path, batch_size=2, log=lambda _: None)
  expected = helpers.reference_probabilities(classifier, text_encoder, "binary", texts)
  np.testing.assert_allclose([float(r[2]) for r in read_csv(output_path)[1:]], expected,
                             atol=1e-5)
  # Not what the head would give: the long texts' probabilities depend on the strategy.
  head = helpers.reference_probabilities(classifier, helpers.tiny_setup(
      str(tmp_path))[1], "binary", texts)
  assert np.abs(head[:2] - expected[:2]).min() > 1e-5 and head[2] == pytest.approx(expected[2])


def test_bad_rows_are_written_empty_and_counted(binary_model, tmp_path):
  input_path, output_path = str(tmp_path / "test.csv"), str(tmp_path / "pred.csv")
  with open(input_path, "w", encoding="utf-8") as f:
    f.write('qid,question_text\n'
            'a,why is the dog lazy?\n'
            'b,\n'              # empty text
            'c,"   "\n'         # blank text
            'd\n'               # a missing field
            '\n'                # blank line: not a row
            'e,why,is a dog\n'  # an unquoted comma: an extra field
            'f,"a ""quoted"" fox"\n')
  summary = predict.predict_csv(binary_model, input_path, output_path, log=lambda _: None)
  assert summary["rows_read"] == 6 and summary["rows_scored"] == 2
  assert summary["rows_rejected"] == {"empty_text": 2, "wrong_column_count": 2}
  assert summary["rows_rejected_total"] == 4
  out = read_csv(output_path)
  assert [(r[0], r[3]) for r in out[1:]] == [
      ("a", ""), ("b", "empty_text"), ("c", "empty_text"), ("d", "wrong_column_count"),
      ("e", "wrong_column_count"), ("f", "")]
  assert [r[1:3] for r in out[1:] if r[3]] == [["", ""]] * 4
  assert out[6][1] in ("0", "1") and 0 <= float(out[6][2]) <= 1


def test_multiclass_pairs_and_row_numbers(tmp_path):
  vocab_path, text_encoder = helpers.tiny_setup(str(tmp_path))
  export_dir = str(tmp_path / "export")
  labels = ["x", "y", "z"]
  export.export_saved_model(helpers.build_classifier(3, seed=2), text_encoder, labels,
                            "multiclass", None, export_dir, vocab_path)
  input_path, output_path = str(tmp_path / "pairs.csv"), str(tmp_path / "pred.csv")
  pairs = list(zip(helpers.TEXTS[:4], helpers.PAIRS[:4]))
  write_csv(input_path, [["first", "second"]] + [list(p) for p in pairs])
  summary = predict.predict_csv(export_dir, input_path, output_path, id_column=None,
                                text_column="first", text_pair_column="second",
                                log=lambda _: None)
  # PAIRS[2] is empty: a pair model needs both texts (preprocessing's empty_text too).
  assert summary["rows_scored"] == 3 and summary["rows_rejected"] == {"empty_text": 1}
  out = read_csv(output_path)
  assert out[0] == ["row", "label", "probability_x", "probability_y", "probability_z", "error"]
  assert [r[0] for r in out[1:]] == ["1", "2", "3", "4"]
  good = [0, 1, 3]
  expected = tf.saved_model.load(export_dir).signatures["serve_text_pair"](
      text=tf.constant([pairs[i][0] for i in good]),
      text_pair=tf.constant([pairs[i][1] for i in good]))
  got = np.array([[float(x) for x in out[1 + i][2:5]] for i in good])
  np.testing.assert_allclose(got, expected["probabilities"].numpy(), atol=1e-6)
  np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
  assert [out[1 + i][1] for i in good] == [x.decode() for x in expected["label"].numpy()]
  assert out[3][1:] == ["", "", "", "", "empty_text"]


def test_encoding_flag(binary_model, tmp_path):
  input_path = str(tmp_path / "latin.csv")
  write_csv(input_path, [["qid", "question_text"], ["1", "café dog"], ["2", "a dog"]],
            encoding="latin-1")
  lines = []
  summary = predict.predict_csv(binary_model, input_path, str(tmp_path / "p.csv"),
                                log=lines.append)
  # As preprocessing: the row is rejected, the others are scored, the summary says why.
  assert summary["rows_rejected"] == {"undecodable": 1} and summary["rows_scored"] == 1
  assert "undecodable rows: is --encoding right (e.g. latin-1)?" in lines[-1]
  assert [r[0] for r in read_csv(str(tmp_path / "p.csv"))[1:]] == ["1", "2"]
  summary = predict.predict_csv(binary_model, input_path, str(tmp_path / "p.csv"),
                                encoding="latin-1", log=lambda _: None)
  assert summary["rows_scored"] == 2
  assert read_csv(str(tmp_path / "p.csv"))[1][0] == "1"


def test_gfile_paths(binary_model):
  # ram:// is TensorFlow's in-memory file system: input and output go through tf.io.gfile.
  with tf.io.gfile.GFile("ram://predict/in.csv", "w") as f:
    f.write("qid,question_text\n1,the dog\n2,a cat\n")
  summary = predict.predict_csv(binary_model, "ram://predict/in.csv", "ram://predict/out.csv",
                                log=lambda _: None)
  assert summary["rows_scored"] == 2
  with tf.io.gfile.GFile("ram://predict/out.csv") as f:
    assert [line.split(",")[0] for line in f.read().splitlines()] == ["qid", "1", "2"]


def test_missing_inputs_raise_one_line(binary_model, tmp_path):
  input_path = str(tmp_path / "test.csv")
  write_csv(input_path, [["qid", "question_text"], ["1", "dog"]])
  output_path = str(tmp_path / "p.csv")
  cases = [
      ((binary_model, str(tmp_path / "none.csv"), output_path), {}, "input file .* not exist"),
      ((str(tmp_path / "nope"), input_path, output_path), {}, "model directory .* not exist"),
      ((str(tmp_path), input_path, output_path), {}, "not a model exported by trainer.export"),
      ((binary_model, input_path, output_path), {"id_column": "id"},
       "column 'id' is not in .*--id_column= to number the rows"),
      ((binary_model, input_path, output_path), {"batch_size": 0}, "batch_size must be"),
  ]
  for args, kwargs, message in cases:
    with pytest.raises(ValueError, match=message) as info:
      predict.predict_csv(*args, log=lambda _: None, **kwargs)
    assert "\n" not in str(info.value)
  assert not os.path.exists(output_path)


def test_main_runs_from_flags(binary_model, tmp_path, capsys):
  input_path, output_path = str(tmp_path / "test.csv"), str(tmp_path / "p.csv")
  write_csv(input_path, [["id", "text"], ["7", "the dog"], ["8", "a cat"]])
  predict.main(cli.parse_flags([
      "predict", f"--model={binary_model}", f"--input={input_path}", f"--output={output_path}",
      "--id_column=id", "--text_column=text", "--batch_size=1"]))
  assert [r[0] for r in read_csv(output_path)] == ["id", "7", "8"]
  assert "predict: done: 2 rows, 2 predicted" in capsys.readouterr().out


def test_cli_missing_column_is_one_line_exit_1(binary_model, tmp_path):
  input_path = str(tmp_path / "test.csv")
  write_csv(input_path, [["qid", "text"], ["1", "dog"]])
  result = subprocess.run(
      [sys.executable, "-m", "serving.predict", f"--model={binary_model}",
       f"--input={input_path}", f"--output={tmp_path / 'p.csv'}"],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert error_lines == [f"error: {input_path}: column 'question_text' is not in the header "
                         "['qid', 'text']"]
  assert result.stderr.rstrip().endswith(error_lines[0])
  assert not os.path.exists(tmp_path / "p.csv")


@pytest.mark.parametrize("argv,message", [
    (["--model=m", "--input=i"], "error: --output required"),
    (["--model=m", "--input=i", "--output=o", "--batch_size=x"], "error: flag --batch_size=x"),
    (["--model=m", "--input=i", "--output=o", "extra"], "error: unexpected arguments: extra"),
    (["--model=m", "--input=i", "--output=o", "--nope=1"], "error: Unknown command line flag"),
])
def test_main_flag_errors(argv, message):
  with pytest.raises(SystemExit) as info:
    predict.main(cli.parse_flags(["predict"] + argv))
  assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_cli_help_and_missing_flags_are_short(tmp_path):
  def run(*argv):
    # The former name: same flags, help and errors.
    return subprocess.run([sys.executable, "-m", "trainer.predict", *argv], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
  shown = run("--help")
  assert "--model" in shown.stdout and "--text_pair_column" in shown.stdout
  missing = run(f"--input={tmp_path / 'x.csv'}")
  assert missing.returncode == 1
  assert missing.stderr.strip().splitlines()[-1] == "error: --model, --output required"
  assert "Traceback" not in missing.stderr


def test_tsv_and_unescape_html_default_from_the_export(tmp_path):
  vocab_path, text_encoder = helpers.tiny_setup(str(tmp_path))
  export_dir = str(tmp_path / "export")
  # As export_step records a manifest with --unescape_html=true.
  export.export_saved_model(helpers.build_classifier(1), text_encoder, ["0", "1"], "binary",
                            0.5, export_dir, vocab_path,
                            extra_metadata={"input": {"unescape_html": True}})
  escaped = ["the dog&#039;s &quot;lazy&quot;", "fox &amp;\tcat", "&#32;"]
  input_path = str(tmp_path / "in.tsv")
  with open(input_path, "w", encoding="utf-8") as f:
    f.write("id\ttext\n" + "".join(f'{i}\t"{t}"\n' for i, t in enumerate(escaped)))
  signature = tf.saved_model.load(export_dir).signatures["serving_default"]

  def probabilities(texts):
    return signature(text=tf.constant(texts))["probabilities"].numpy().reshape(-1)

  output_path = str(tmp_path / "pred.csv")
  summary = predict.predict_csv(export_dir, input_path, output_path, id_column="id",
                                text_column="text", delimiter="\t", log=lambda _: None)
  assert summary["rows_rejected"] == {"empty_text": 1}  # "&#32;" is a space once unescaped
  out = read_csv(output_path)
  np.testing.assert_allclose([float(r[2]) for r in out[1:3]],
                             probabilities(["the dog's \"lazy\"", "fox &\tcat"]), atol=1e-6)
  predict.predict_csv(export_dir, input_path, output_path, id_column="id", text_column="text",
                      delimiter="\t", unescape_html=False, log=lambda _: None)
  out = read_csv(output_path)
  np.testing.assert_allclose([float(r[2]) for r in out[1:4]], probabilities(escaped), atol=1e-6)
  assert export_info.unescape_html_default({}, None) is False  # Exports that do not record it.


@pytest.mark.parametrize("value,expected", [("tab", "\t"), ("\\t", "\t"), ("\t", "\t"),
                                            (";", ";"), ("comma", ",")])
def test_parse_delimiter(value, expected):
  assert cli.parse_delimiter(value) == expected


@pytest.mark.parametrize("value", ["", "ab", '"', "a", "\r"])
def test_parse_delimiter_refuses_in_one_line(value):
  with pytest.raises(ValueError, match="^--delimiter must be one character") as e:
    cli.parse_delimiter(value)
  assert "\n" not in str(e.value)


class _RecordingSignature:
  """Stands in for the export's signature: records each batch, returns P = 0.5."""
  structured_input_signature = ((), {"text": None})

  def __init__(self):
    self.batches = []

  def __call__(self, text):
    texts = [t.decode("utf-8") for t in text.numpy()]
    self.batches.append(texts)
    return {"probabilities": tf.fill([len(texts)], 0.5),
            "label": tf.constant([b"yes"] * len(texts))}


def test_chunks_are_batched_by_word_pieces_and_written_in_input_order():
  # Characters and word pieces disagree: "xxxxxxxxxx" is one [UNK] piece, "a b c" three.
  pieces = {"a b c d": 4, "xxxxxxxxxx": 1, "a b c": 3, "yyyyyyyyyyyy": 1}
  chunk = [inputs.InputRow(i + 1, str(i), text, "", None, n)
           for i, (text, n) in enumerate(pieces.items())]
  signature = _RecordingSignature()
  model = types.SimpleNamespace(signatures={"serving_default": signature})
  counts = {"rows": 0, "scored": 0, "rejected": collections.Counter()}
  lines = predict._predict_chunk(model, "serving_default", chunk, 2,
                                 ["id", "label", "probability", "error"], counts)
  assert signature.batches == [["xxxxxxxxxx", "yyyyyyyyyyyy"], ["a b c", "a b c d"]]
  assert [line.split(",")[0] for line in lines.splitlines()] == ["0", "1", "2", "3"]
