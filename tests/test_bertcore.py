"""bertcore's shared pieces: names, file helpers, the W&B mode rule, the typed Manifest."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from bertcore import cli, files, names, private_apis, schema, wandb_mode  # Before TensorFlow.
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_num_outputs():
  assert [names.num_outputs(h, 3) for h in names.HEADS] == [1, 3, 3]
  with pytest.raises(ValueError, match="head must be one of binary, multiclass, multilabel, "
                                       "got 'softmax'"):
    names.num_outputs("softmax", 3)


def test_names_and_launch_import_without_tensorflow():
  code = ("import sys, bertcore.names, launch.submit, launch.validation; "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120, check=True)
  assert out.stdout.strip() == "False"


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
  path = str(tmp_path / "a.json")
  files.write_json(path, {"b": 1, "a": [1, 2]})
  files.write_json(path, {"c": None})
  assert files.read_json(path) == {"c": None}
  files.write_atomic(str(tmp_path / "b.bin"), b"\x00\x01")
  assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
  assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]
  with pytest.raises(ValueError):  # NaN is not JSON: refused, and the old file is intact.
    files.write_json(path, {"x": float("nan")})
  assert files.read_json(path) == {"c": None} and len(os.listdir(tmp_path)) == 2


def test_error_line():
  assert cli.error_line(ValueError("first\nsecond")) == "first"
  assert cli.error_line(KeyError()) == "KeyError"
  try:
    tf.io.gfile.GFile("/nonexistent/dir/x").read()
  except tf.errors.OpError as e:
    assert cli.error_line(e) == e.message.splitlines()[0]
    assert "\n" not in cli.error_line(e)


class _GraphError(Exception):
  """What TensorFlow raises from a tf.function: the cause after a generic preamble."""
  message = ("Graph execution error:\n\nDetected at node Foo defined at (most recent call last):\n"
             '  File "x.py", line 3, in <module>\n    f()\n\n'
             "Collective ops is aborted by: peer down\n\t [[{{node Foo}}]] [Op:__inference_f_12]")


def test_error_line_finds_the_cause_of_a_graph_error():
  assert cli.error_line(_GraphError()) == "Collective ops is aborted by: peer down"
  corrupt = _GraphError()
  corrupt.message = "{{function_node __inference_x}} corrupted record at 4493 [Op:IteratorGetNext]"
  assert cli.error_line(corrupt) == "corrupted record at 4493"


@pytest.mark.parametrize("env,requested,expected", [
    ({}, "auto", "disabled"),                                    # no key: never a login prompt
    ({"WANDB_API_KEY": "k"}, "auto", "online"),
    ({"WANDB_MODE": "offline"}, "auto", "offline"),              # offline needs no key
    ({"WANDB_MODE": "online"}, "auto", "disabled"),
    ({"WANDB_MODE": "online", "WANDB_API_KEY": "k"}, "auto", "online"),
    ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "auto", "disabled"),
    ({"WANDB_DISABLED": "true", "WANDB_API_KEY": "k"}, "auto", "disabled"),
    ({"WANDB_MODE": "offline"}, "disabled", "disabled"),         # a config value wins
])
def test_wandb_mode(env, requested, expected, monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
  for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED"):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert wandb_mode.resolve_mode(requested) == expected


def test_wandb_key_in_netrc_counts(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.delenv("WANDB_MODE", raising=False)
  (tmp_path / ".netrc").write_text(f"machine {wandb_mode.WANDB_HOST}\n  login user\n"
                                   "  password secret\n")
  os.chmod(tmp_path / ".netrc", 0o600)
  assert wandb_mode.resolve_mode() == "online"


def _manifest():
  split = schema.SplitInfo(rows=3, shards={"train-00000-of-00001.tfrecord": 3},
                           label_histogram={"a": 1, "b": 2}, token_length={"mean": 4.0, "max": 6})
  return schema.Manifest(labels=["a", "b"], vocab_sha256="f" * 64, max_seq_length=16,
                         splits={"train": split, "validation": schema.SplitInfo(rows=0)},
                         vocab_size=30, lower_case=True, compression="GZIP", num_shards=1,
                         tokenizer={"type": "FastBertTokenizer", "vocab_file": "v.txt"},
                         rows_read=4, rows_written=3, rows_rejected={"empty_text": 1},
                         rows_rejected_total=1)


def test_manifest_json_round_trip(tmp_path):
  manifest = _manifest()
  assert schema.Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
  schema.write_manifest(str(tmp_path), manifest)
  read = schema.read_manifest(str(tmp_path))
  assert read == manifest
  assert read.splits["train"].shards == {"train-00000-of-00001.tfrecord": 3}
  assert read.tokenizer_vocab_file == "v.txt"
  on_disk = json.loads((tmp_path / names.MANIFEST_FILE).read_text())
  assert on_disk["splits"]["train"]["rows"] == 3 and on_disk["compression"] == "GZIP"
  assert os.listdir(tmp_path) == [names.MANIFEST_FILE]
  chunked = dataclasses.replace(manifest, chunking={"chunk_length": 16, "chunk_overlap": 2,
                                                    "max_chunks": 3, "max_pieces": 38})
  assert schema.Manifest.from_json(json.loads(json.dumps(chunked.to_json()))) == chunked


def test_an_old_or_minimal_manifest_reads_with_defaults(tmp_path):
  data = {"labels": ["0", "1"], "vocab_sha256": "x", "max_seq_length": 8, "future_key": 1,
          "splits": {"train": {"rows": 2, "shards": {"t.tfrecord": 2}, "new_stat": 0}}}
  manifest = schema.Manifest.from_json(data)
  assert (manifest.lower_case, manifest.compression, manifest.vocab_size) == (None, None, None)
  assert manifest.splits["train"] == schema.SplitInfo(rows=2, shards={"t.tfrecord": 2})
  assert manifest.truncation == "head"   # written before --truncation: the head was kept
  assert manifest.splits["train"].truncated_pieces == {}
  assert manifest.chunking is None and manifest.splits["train"].windows == {}  # truncated data
  assert not hasattr(manifest, "future_key")   # keys of later versions are ignored


@pytest.mark.parametrize("content,message", [
    (None, "has no manifest.json"),
    ("{", "is not valid JSON"),
    ("[1]", "does not hold a JSON object"),
    ('{"labels": [], "max_seq_length": 8}', "lacks vocab_sha256, splits; re-run preprocessing"),
    ('{"labels": [], "vocab_sha256": "x", "max_seq_length": 8, "splits": {"train": {}}}',
     "is malformed"),
    ('{"labels": [], "vocab_sha256": "x", "max_seq_length": 8, "splits": {}, '
     '"truncation": "middle"}', "unknown truncation 'middle' .*knows head, tail, head_tail"),
])
def test_read_manifest_refuses_in_one_line(tmp_path, content, message):
  if content is not None:
    (tmp_path / names.MANIFEST_FILE).write_text(content)
  with pytest.raises(schema.DataError, match=message) as info:
    schema.read_manifest(str(tmp_path))
  assert "\n" not in str(info.value)


def test_tf_record_iterator_reads_back(tmp_path):
  path = str(tmp_path / "r.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for payload in (b"one", b"", b"three"):
      writer.write(payload)
  assert list(private_apis.tf_record_iterator(path)) == [b"one", b"", b"three"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="oneDNN default: Linux only")
@pytest.mark.parametrize("user_value, enabled", [(None, True), ("0", False)])
def test_onednn_on_unless_the_user_says_otherwise(user_value, enabled):
  # TF alone turns oneDNN on only for CPUs with VNNI / BF16 / AMX; importing bertcore first asks
  # for it everywhere on x86-64, and a user's own TF_ENABLE_ONEDNN_OPTS wins.
  import platform
  if platform.machine() not in ("x86_64", "AMD64"):
    pytest.skip("oneDNN default: x86-64 only")
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if user_value is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = user_value
  code = ("import os, bertcore; from bertcore import private_apis; "
          "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], private_apis.onednn_enabled())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=120, check=True)
  assert out.stdout.split() == [user_value or "1", str(enabled)]
