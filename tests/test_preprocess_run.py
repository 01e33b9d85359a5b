"""Flags of `python -m preprocess.run` and the runner choice (no pipeline runs here)."""
import dataclasses
import pickle

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner

from bertcore import beam_jobs
from bertcore import windows
from preprocess import job
from preprocess import rows
from preprocess import run as run_lib


def kwargs(*flags, vocab_file="v.txt"):
  args, rest = run_lib.make_parser().parse_known_args(
      ["--input=x.csv", "--output_dir=out/", f"--vocab_file={vocab_file}", *flags])
  assert rest == []
  return run_lib.make_settings(args)


def test_defaults_match_quora():
  k = kwargs()
  assert k.columns == rows.Columns("qid", "question_text", None, "target")
  assert (k.labels, k.row_config.labels, k.row_config.label_map) == (None, None, None)
  assert (k.max_seq_length, k.num_shards, k.compression) == (128, 16, None)
  assert k.truncation == "head"
  assert kwargs("--truncation=head_tail", "--max_seq_length=512").truncation == "head_tail"
  assert (k.train_fraction, k.validation_fraction) == (0.8, 0.1)
  assert (k.output_dir, k.lower_case, k.encoding) == ("out", True, "utf-8")
  assert (k.delimiter, k.row_config.unescape_html) == (",", False)


def test_settings_are_frozen_and_travel_to_workers():
  k = kwargs("--labels=0,1")
  with pytest.raises(dataclasses.FrozenInstanceError):
    k.num_shards = 2  # pylint: disable=assigning-non-slot
  assert pickle.loads(pickle.dumps(k)) == k


def test_label_flags():
  k = kwargs("--labels=0,1", "--lower_case=false", "--compression=gzip")
  assert k.labels == ("0", "1") and k.row_config.labels == frozenset({"0", "1"})
  assert (k.lower_case, k.compression) == (False, "GZIP")
  k = kwargs("--label_map=pos:positive,neg:rest,neu:rest")
  assert k.labels == ("positive", "rest")  # Sorted class names when --labels is not given.
  assert k.row_config.label_map == {"pos": "positive", "neg": "rest", "neu": "rest"}
  k = kwargs("--label_column=", "--id_column=", "--text_pair_column=b")
  assert k.labels == () and k.columns == rows.Columns(None, "question_text", "b", None)


@pytest.mark.parametrize("flags,message", [
    (["--labels=a,a"], "repeated"),
    (["--labels=a", "--label_map=x:b"], "which --labels does not list"),
    (["--label_map=nocolon"], "raw:class"),
    (["--label_column=", "--labels=a"], "need a --label_column"),
])
def test_inconsistent_flags(flags, message):
  with pytest.raises(ValueError, match=message):
    kwargs(*flags)


def test_vocabulary_is_required():
  args, _ = run_lib.make_parser().parse_known_args(["--input=x", "--output_dir=o"])
  with pytest.raises(ValueError, match="--vocab_file, --encoder_dir or --bert_handle"):
    run_lib.make_settings(args)


def test_unknown_flags_are_refused_and_beam_flags_pass():
  assert beam_jobs.unknown_beam_args(["--lable_column=x", "--runner=DataflowRunner",
                                      "--project=p", "--setup_file=./setup.py",
                                      "--direct_num_workers=2"]) == ["--lable_column=x"]
  with pytest.raises(ValueError, match="unknown flag"):
    run_lib.run(["--input=x", "--output_dir=o", "--vocab_file=v", "--lable_column=x"])


def test_runner_choice():
  assert isinstance(beam_jobs.make_runner(PipelineOptions([])), fn_runner.FnApiRunner)
  assert isinstance(beam_jobs.make_runner(PipelineOptions(["--runner=DirectRunner"])),
                    fn_runner.FnApiRunner)
  assert beam_jobs.make_runner(PipelineOptions(["--runner=DataflowRunner"])) == "DataflowRunner"


def test_bad_numbers(tmp_path):
  with pytest.raises(ValueError, match="sum to at most 1"):
    run_lib.run(["--input=x", f"--output_dir={tmp_path}", "--vocab_file=v",
                 "--train_fraction=0.9", "--validation_fraction=0.2"])
  with pytest.raises(ValueError, match="--batch_size"):
    run_lib.run(["--input=x", f"--output_dir={tmp_path}", "--vocab_file=v", "--batch_size=0"])


def test_unknown_truncation_is_one_line(tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    run_lib.main(["--input=x", f"--output_dir={tmp_path / 'out'}", "--vocab_file=v",
                  "--truncation=middle"])
  assert exit_info.value.code == (
      "error: --truncation must be one of head, tail, head_tail, got 'middle'")
  assert not (tmp_path / "out").exists()


def test_encoder_dir_gives_vocab_and_casing(tmp_path, tiny_vocab_file):
  (tmp_path / "bert_config.json").write_text('{"do_lower_case": false}')
  (tmp_path / "vocab.txt").write_text(open(tiny_vocab_file).read())
  args, _ = run_lib.make_parser().parse_known_args(
      ["--input=x", "--output_dir=o", f"--encoder_dir={tmp_path}"])
  k = run_lib.make_settings(args)
  assert (k.vocab_path, k.lower_case) == (str(tmp_path / "vocab.txt"), False)
  args, _ = run_lib.make_parser().parse_known_args(
      ["--input=x", "--output_dir=o", f"--encoder_dir={tmp_path}", "--lower_case=true"])
  assert run_lib.make_settings(args).lower_case is True


def _write_typo_csv(path):
  """30 rows: 0/1 labels (15 each), plus one row whose label is a typo `7`."""
  lines = ["qid,question_text,target"]
  lines += [f"q{i},hello world,{i % 2}" for i in range(30)]
  lines += ["q99,the cat sat,7"]
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def test_rare_discovered_label_is_warned_about_and_counted(tmp_path, tiny_vocab_file, capsys):
  pattern = _write_typo_csv(tmp_path / "in.csv")
  run_lib.main([f"--input={pattern}", f"--output_dir={tmp_path / 'out'}",
                f"--vocab_file={tiny_vocab_file}", "--num_shards=1"])
  out, err = capsys.readouterr()
  assert err.splitlines() == [
      "warning: discovered label '7' is on only 1 of 31 rows (3.23%); if it is a typo, fix the "
      "classes with --labels=0,1 (other values are then rejected as unknown_label) or merge it "
      "with --label_map=<raw>:<class>,..."]
  assert "; labels {0: 15, 1: 15, 7: 1}; " in out


def test_given_labels_are_not_warned_about(tmp_path, tiny_vocab_file, capsys):
  pattern = _write_typo_csv(tmp_path / "in.csv")
  run_lib.main([f"--input={pattern}", f"--output_dir={tmp_path / 'out'}",
                f"--vocab_file={tiny_vocab_file}", "--num_shards=1", "--labels=0,1"])
  out, err = capsys.readouterr()
  assert err == ""
  assert "1 rejected {'unknown_label': 1}; labels {0: 15, 1: 15}; " in out


def _beam_reads_gcs():
  try:
    FileSystems.get_filesystem("gs://bucket/x")
  except ValueError:
    return False
  return True


@pytest.mark.skipif(_beam_reads_gcs(), reason="apache-beam[gcp] is installed here")
def test_gs_path_without_the_gcs_extra_is_one_line(tmp_path, tiny_vocab_file):
  with pytest.raises(SystemExit) as exit_info:
    run_lib.main(["--input=gs://bucket/train.csv", f"--output_dir={tmp_path / 'out'}",
                  f"--vocab_file={tiny_vocab_file}"])
  assert exit_info.value.code == ('error: gs://bucket/train.csv: reading gs:// paths needs '
                                  'Beam\'s GCS support: pip install "apache-beam[gcp]"')


@pytest.mark.parametrize("flag,expected", [
    ("--delimiter=tab", "\t"), ("--delimiter=\\t", "\t"), ("--delimiter=\t", "\t"),
    ("--delimiter=TAB", "\t"), ("--delimiter=;", ";"), ("--delimiter=,", ",")])
def test_delimiter_spellings(flag, expected):
  assert kwargs(flag).delimiter == expected


@pytest.mark.parametrize("value", ["", "ab", '"', "x", "\n"])
def test_bad_delimiter_is_one_line(value, tmp_path, tiny_vocab_file, capsys):
  with pytest.raises(SystemExit) as e:
    run_lib.main([f"--input={tmp_path}/x.csv", f"--output_dir={tmp_path}/o",
                  f"--vocab_file={tiny_vocab_file}", f"--delimiter={value}"])
  assert str(e.value).startswith("error: --delimiter must be one character")
  assert "\n" not in str(e.value)


def test_test_input_flags():
  k = kwargs("--test_input=t1.csv", "--test_input=t2.csv", "--validation_fraction=0.25",
             "--unescape_html=true")
  assert k.test_input_patterns == ("t1.csv", "t2.csv")
  assert (k.train_fraction, k.validation_fraction) == (0.75, 0.25)
  assert k.row_config.unescape_html is True
  assert kwargs().test_input_patterns == () and not kwargs().row_config.unescape_html
  with pytest.raises(ValueError, match="--train_fraction does not apply with --test_input"):
    kwargs("--test_input=t.csv", "--train_fraction=0.5")


def test_a_file_in_both_roles_is_refused(tmp_path, tiny_vocab_file):
  (tmp_path / "a.csv").write_text("qid,question_text,target\nq1,hello,1\n")
  with pytest.raises(ValueError, match="both an --input and a --test_input file"):
    run_lib.run([f"--input={tmp_path}/*.csv", f"--test_input={tmp_path}/a.csv",
                 f"--output_dir={tmp_path}/o", f"--vocab_file={tiny_vocab_file}"])


def test_chunking_flags():
  assert kwargs().chunking is None  # default --max_chunks=0: truncation, as before
  k = kwargs("--max_seq_length=256", "--max_chunks=8")
  assert k.chunking == windows.Geometry(chunk_length=256, chunk_overlap=32, max_chunks=8)
  assert (k.max_seq_length, k.record_length) == (256, 8 * 222 + 32 + 2)
  assert kwargs("--max_chunks=2", "--chunk_overlap=0", "--max_seq_length=8").record_length == 14


@pytest.mark.parametrize("flags,line", [
    (["--max_chunks=-1"], "error: --max_chunks must be 0 (off: texts are truncated) or a number "
                          "of windows >= 1, got -1"),
    (["--max_chunks=4", "--max_seq_length=34"],
     "error: --max_chunks=4 --chunk_overlap=32 --max_seq_length=34 (the window length, "
     "chunk_length): chunk_overlap must be in [0, chunk_length - 2 = 32), got 32"),
    (["--max_chunks=4", "--text_pair_column=b"],
     "error: chunking reads single texts; --text_pair_column is set: pair tasks have short "
     "texts, and a window cannot hold the second segment beside a long first one; drop "
     "--max_chunks to truncate the pairs (--truncation)"),
])
def test_bad_chunking_is_one_line_before_anything_is_built(flags, line, tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    run_lib.main(["--input=x", f"--output_dir={tmp_path / 'out'}", "--vocab_file=v", *flags])
  assert exit_info.value.code == line
  assert not (tmp_path / "out").exists()
