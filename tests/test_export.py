"""trainer.export: export -> reload -> parity with the classifier on preprocessed ids and records.

A tiny random BertEncoderV2 with a hand-written vocabulary (tests/helpers.py); each export takes
a few seconds.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from bertcore import schema  # Imports bertcore first: Keras 2 before TensorFlow.
from bertcore import tokenization
from serving import export_info
from trainer import export

import numpy as np
import tensorflow as tf

from helpers import (LONG_TEXT, MAX_SEQ_LENGTH, PAIRS, TEXTS, VERY_LONG_TEXT, VOCAB,
                     build_classifier, reference_probabilities, serve, tiny_setup, write_vocab)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
  """A binary export with threshold 0.5 and what made it."""
  root = tmp_path_factory.mktemp("binary")
  vocab_path, text_encoder = tiny_setup(str(root))
  classifier = build_classifier(1)
  export_dir = str(root / "export")
  export.export_saved_model(classifier, text_encoder, ["no", "yes"], "binary", 0.5, export_dir,
                            vocab_path, extra_metadata={"run": "test"})
  return {"root": root, "vocab_path": vocab_path, "text_encoder": text_encoder,
          "classifier": classifier, "export_dir": export_dir,
          "loaded": tf.saved_model.load(export_dir)}


def test_layout_assets_and_metadata(binary):
  export_dir = binary["export_dir"]
  assert sorted(os.listdir(export_dir)) == ["assets", "fingerprint.pb", "saved_model.pb",
                                            "variables"]
  # Nothing half-written left next to it.
  assert sorted(os.listdir(binary["root"])) == ["export", "vocab.txt"]
  with open(os.path.join(export_dir, "assets", "vocab.txt"), "rb") as f:
    bundled = f.read()
  with open(binary["vocab_path"], "rb") as f:
    assert bundled == f.read()
  metadata = export_info.read_metadata(export_dir)
  assert metadata["head"] == "binary" and metadata["labels"] == ["no", "yes"]
  assert metadata["threshold"] == 0.5 and metadata["num_outputs"] == 1
  assert metadata["max_seq_length"] == MAX_SEQ_LENGTH and metadata["lower_case"] is True
  assert metadata["truncation"] == "head" and loaded_truncation(binary) == "head"
  assert metadata["vocab_sha256"] == tokenization.vocab_sha256(VOCAB)
  assert metadata["run"] == "test"
  loaded = binary["loaded"]
  assert loaded.labels.numpy().tolist() == [b"no", b"yes"]
  assert loaded.head.numpy() == b"binary" and loaded.threshold.numpy() == 0.5
  assert loaded.max_seq_length.numpy() == MAX_SEQ_LENGTH and loaded.lower_case.numpy()
  assert loaded.vocab_file.asset_path.numpy().decode() == os.path.join(
      export_dir, "assets", "vocab.txt")
  assert set(loaded.signatures) == {"serving_default", "serve_text_pair", "serve_examples"}


def loaded_truncation(fixture):
  return fixture["loaded"].truncation.numpy().decode()


def test_signature_names_and_dtypes(binary):
  signatures = binary["loaded"].signatures
  _, inputs = signatures["serving_default"].structured_input_signature
  assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {
      "text": (tf.string, [None])}
  _, inputs = signatures["serve_text_pair"].structured_input_signature
  assert sorted(inputs) == ["text", "text_pair"]
  _, inputs = signatures["serve_examples"].structured_input_signature
  assert sorted(inputs) == ["examples"]
  outputs = signatures["serving_default"].structured_outputs
  assert {k: v.dtype for k, v in outputs.items()} == {
      "probabilities": tf.float32, "label_id": tf.int64, "label": tf.string}
  assert outputs["probabilities"].shape.as_list() == [None]  # binary: P(label 1)
  assert signatures["serve_examples"].structured_outputs["example_id"].dtype == tf.string


def test_empty_batch(binary):
  out = serve(binary["loaded"], [])
  assert out["probabilities"].shape == (0,) and out["label"].shape == (0,)
  out = binary["loaded"].signatures["serve_examples"](examples=tf.constant([], tf.string))
  assert out["probabilities"].shape == (0,)


def test_raw_text_parity_with_classifier(binary):
  texts = TEXTS + [LONG_TEXT]
  out = serve(binary["loaded"], texts)
  expected = reference_probabilities(binary["classifier"], binary["text_encoder"], "binary",
                                     texts)
  np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
  # The random model must separate the texts, or parity would prove little.
  assert np.ptp(expected) > 0.05
  np.testing.assert_array_equal(out["label_id"], (expected >= 0.5).astype(np.int64))
  assert out["label"].tolist() == [b"yes" if p >= 0.5 else b"no" for p in expected]


def test_pair_parity_with_classifier(binary):
  out = serve(binary["loaded"], TEXTS + [LONG_TEXT], PAIRS + [LONG_TEXT])
  expected = reference_probabilities(binary["classifier"], binary["text_encoder"], "binary",
                                     TEXTS + [LONG_TEXT], PAIRS + [LONG_TEXT])
  np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
  # A pair is not the same input as its first text alone.
  single = serve(binary["loaded"], TEXTS)["probabilities"]
  assert np.abs(single - out["probabilities"][:-1]).max() > 1e-3


def test_records_give_same_outputs_as_raw_text(binary):
  """The parity proof: preprocessed tf.Examples (bertcore.schema) vs raw text in the export."""
  text_encoder = binary["text_encoder"]
  texts, pairs = TEXTS + [LONG_TEXT], PAIRS + [LONG_TEXT]
  loaded = binary["loaded"]
  for pair_texts in (None, pairs):
    ids, type_ids, _ = text_encoder.encode(
        tf.constant(texts), None if pair_texts is None else tf.constant(pair_texts))
    records = [schema.make_example(f"row{i}", row, row_types, []).SerializeToString()
               for i, (row, row_types) in enumerate(zip(ids.to_list(), type_ids.to_list()))]
    from_records = loaded.signatures["serve_examples"](examples=tf.constant(records))
    from_text = serve(loaded, texts, pair_texts)
    np.testing.assert_allclose(from_records["probabilities"].numpy(),
                               from_text["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(from_records["label"].numpy(), from_text["label"])
    assert from_records["example_id"].numpy().tolist() == [
        f"row{i}".encode() for i in range(len(texts))]


def test_record_longer_than_max_seq_length_is_refused(binary):
  ids = [2] + [4] * MAX_SEQ_LENGTH + [3]
  record = schema.make_example("x", ids, [0] * len(ids), []).SerializeToString()
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_length"):
    binary["loaded"].signatures["serve_examples"](examples=tf.constant([record]))


def test_truncation_is_the_preprocessing_truncation(binary):
  text_encoder, loaded = binary["text_encoder"], binary["loaded"]
  ids, _, num_pieces = text_encoder.encode(tf.constant([LONG_TEXT]))
  assert num_pieces.numpy()[0] > MAX_SEQ_LENGTH  # really truncated
  assert len(ids.to_list()[0]) == MAX_SEQ_LENGTH
  # Only the first MAX_SEQ_LENGTH - 2 word pieces count: changing the tail changes nothing,
  # changing the kept head does.
  kept = "the quick brown fox jumps over"  # 7 pieces (jump ##s) > 6 kept
  out = serve(loaded, [LONG_TEXT, kept + " a cat", "the quick brown cat jumps over the lazy dog"]
              )["probabilities"]
  assert out[0] == pytest.approx(out[1], abs=1e-6)
  assert abs(out[0] - out[2]) > 1e-4


@pytest.fixture(scope="module", params=["head", "tail", "head_tail"])
def by_truncation(request, tmp_path_factory):
  """A binary export whose TextEncoder truncates with each strategy."""
  root = tmp_path_factory.mktemp(request.param)
  vocab_path = write_vocab(str(root))
  text_encoder = tokenization.TextEncoder(VOCAB, True, MAX_SEQ_LENGTH, request.param)
  classifier = build_classifier(1)
  export_dir = str(root / "export")
  export.export_saved_model(classifier, text_encoder, ["no", "yes"], "binary", 0.5, export_dir,
                            vocab_path)
  return {"truncation": request.param, "text_encoder": text_encoder, "classifier": classifier,
          "export_dir": export_dir, "loaded": tf.saved_model.load(export_dir)}


def test_each_truncation_serves_what_preprocessing_made(by_truncation):
  """Parity per strategy: raw strings in the export == the classifier on TextEncoder ids ==
  the export on the preprocessed records; single texts and pairs, far over the limit."""
  text_encoder, loaded = by_truncation["text_encoder"], by_truncation["loaded"]
  assert export_info.read_metadata(by_truncation["export_dir"])["truncation"] == (
      by_truncation["truncation"])
  assert loaded_truncation(by_truncation) == by_truncation["truncation"]
  texts = TEXTS + [LONG_TEXT, VERY_LONG_TEXT]
  for pair_texts in (None, PAIRS + [VERY_LONG_TEXT, LONG_TEXT]):
    out = serve(loaded, texts, pair_texts)
    expected = reference_probabilities(by_truncation["classifier"], text_encoder, "binary",
                                       texts, pair_texts)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert np.ptp(expected) > 0.05
    ids, type_ids, num_pieces = text_encoder.encode(
        tf.constant(texts), None if pair_texts is None else tf.constant(pair_texts))
    assert num_pieces.numpy()[-1] >= 5 * MAX_SEQ_LENGTH
    records = [schema.make_example(f"row{i}", row, row_types, []).SerializeToString()
               for i, (row, row_types) in enumerate(zip(ids.to_list(), type_ids.to_list()))]
    from_records = loaded.signatures["serve_examples"](examples=tf.constant(records))
    np.testing.assert_allclose(from_records["probabilities"].numpy(), out["probabilities"],
                               atol=1e-6)


def test_each_truncation_reads_its_own_part_of_a_long_text(by_truncation):
  # 14 pieces; 6 are kept: head the first 6, tail the last 6, head_tail the first 1 + last 5.
  # Changing a piece in the middle (the 8th, "the" -> "a") changes nothing for any strategy;
  # changing the first piece only matters to head and head_tail, the last only to tail and
  # head_tail.
  middle = LONG_TEXT.replace("over the lazy", "over a lazy")
  first = "a" + LONG_TEXT[len("the"):]
  last = LONG_TEXT[:-len("sleep")] + "jump"
  out = serve(by_truncation["loaded"], [LONG_TEXT, middle, first, last])["probabilities"]
  assert out[1] == pytest.approx(out[0], abs=1e-6)
  reads_first = by_truncation["truncation"] in ("head", "head_tail")
  reads_last = by_truncation["truncation"] in ("tail", "head_tail")
  # Same ids give the same probability to the last bit; other ids move it (the random model
  # is near saturation on this text, so by little).
  assert (abs(out[2] - out[0]) > 1e-5) == reads_first
  assert (abs(out[3] - out[0]) > 1e-5) == reads_last


def test_threshold_decides_the_label_and_reexport_replaces(binary):
  root = binary["root"]
  probs = serve(binary["loaded"], TEXTS)["probabilities"]
  # A threshold between two neighbouring probabilities, on the far side of some row from 0.5,
  # so that this row's label differs from the 0.5 export's.
  ordered = np.sort(probs)
  candidates = [(a + b) / 2 for a, b in zip(ordered, ordered[1:])
                if b - a > 1e-4 and ((probs >= (a + b) / 2) != (probs >= 0.5)).any()]
  assert candidates
  threshold = float(candidates[0])
  export_dir = str(root / "threshold")
  shutil.copytree(binary["export_dir"], export_dir)  # an older export to replace
  export.export_saved_model(binary["classifier"], binary["text_encoder"], ["no", "yes"],
                            "binary", threshold, export_dir, binary["vocab_path"])
  out = serve(tf.saved_model.load(export_dir), TEXTS)
  old = serve(binary["loaded"], TEXTS)
  np.testing.assert_array_equal(out["label_id"], (probs >= threshold).astype(np.int64))
  np.testing.assert_array_equal(old["label_id"], (probs >= 0.5).astype(np.int64))
  assert (out["label_id"] != old["label_id"]).any()
  np.testing.assert_allclose(out["probabilities"], probs, atol=1e-6)
  assert export_info.read_metadata(export_dir)["threshold"] == threshold
  assert not [p for p in os.listdir(root) if ".tmp-" in p or ".old-" in p]


def test_failed_export_leaves_old_export_intact(binary, monkeypatch):
  export_dir = binary["export_dir"]

  def half_write_then_crash(module, path, signatures=None):
    tf.io.gfile.makedirs(path)
    with tf.io.gfile.GFile(path + "/saved_model.pb", "wb") as f:
      f.write(b"partial")
    raise RuntimeError("preempted")
  monkeypatch.setattr(tf.saved_model, "save", half_write_then_crash)
  with pytest.raises(RuntimeError, match="preempted"):
    export.export_saved_model(binary["classifier"], binary["text_encoder"], ["no", "yes"],
                              "binary", 0.9, export_dir, binary["vocab_path"])
  assert export_info.read_metadata(export_dir)["threshold"] == 0.5
  assert not [p for p in os.listdir(binary["root"]) if ".tmp-" in p]
  monkeypatch.undo()
  np.testing.assert_allclose(serve(tf.saved_model.load(export_dir), TEXTS)["probabilities"],
                             serve(binary["loaded"], TEXTS)["probabilities"], atol=1e-6)


@pytest.mark.parametrize("head", ["multiclass", "multilabel"])
def test_multiclass_and_multilabel(tmp_path, head):
  vocab_path, text_encoder = tiny_setup(str(tmp_path))
  labels = ["red", "green", "blue"]
  classifier = build_classifier(len(labels), seed=1)
  threshold = 0.5 if head == "multilabel" else None
  export_dir = str(tmp_path / "export")
  export.export_saved_model(classifier, text_encoder, labels, head, threshold, export_dir,
                            vocab_path)
  loaded = tf.saved_model.load(export_dir)
  out = serve(loaded, TEXTS)
  expected = reference_probabilities(classifier, text_encoder, head, TEXTS)
  assert out["probabilities"].shape == (len(TEXTS), 3)
  np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
  if head == "multiclass":
    np.testing.assert_array_equal(out["label_id"], expected.argmax(axis=1))
    assert out["label"].tolist() == [labels[i].encode() for i in expected.argmax(axis=1)]
    assert export_info.read_metadata(export_dir)["threshold"] is None
  else:
    hot = (expected >= 0.5).astype(np.int64)
    assert 0 < hot.sum() < hot.size  # some labels on, some off
    np.testing.assert_array_equal(out["label_id"], hot)
    assert out["label"].tolist() == [
        "|".join(name for name, on in zip(labels, row) if on).encode() for row in hot]


def test_bad_arguments_are_refused(tmp_path):
  vocab_path, text_encoder = tiny_setup(str(tmp_path))
  classifier = build_classifier(2)
  export_dir = str(tmp_path / "export")
  with pytest.raises(ValueError, match=r"needs \[batch, 1\]"):
    export.export_saved_model(classifier, text_encoder, ["0", "1"], "binary", 0.5, export_dir,
                              vocab_path)
  with pytest.raises(ValueError, match="needs a threshold"):
    export.export_saved_model(classifier, text_encoder, ["a", "b"], "multilabel", None,
                              export_dir, vocab_path)
  other_vocab = tmp_path / "other.txt"
  other_vocab.write_text("\n".join(VOCAB + ["extra"]) + "\n")
  with pytest.raises(ValueError, match="is not the vocabulary of the text encoder"):
    export.export_saved_model(classifier, text_encoder, ["a", "b"], "multiclass", None,
                              export_dir, str(other_vocab))
  assert not os.path.exists(export_dir)
  with pytest.raises(ValueError, match="no assets/metadata.json"):
    export_info.read_metadata(str(tmp_path))


FRESH_PROCESS = textwrap.dedent("""
    import json, os, shutil, sys
    import tensorflow as tf
    export_dir = sys.argv[1]
    try:
      tf.saved_model.load(export_dir)
      without_text = "loaded"
    except Exception as e:  # expected: the tokenizer's ops are not registered yet
      without_text = f"{type(e).__name__}: {e}"[:500]
    import tensorflow_text  # noqa: F401  (registers the ops; that is all the model needs)
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
    print(json.dumps({
        "without_text": without_text,
        "probabilities": out["probabilities"].numpy().tolist(),
        "label": [x.decode() for x in out["label"].numpy()],
        "vocab_asset": loaded.vocab_file.asset_path.numpy().decode(),
        # Our packages and Model Garden stay out (TF itself may import Keras lazily).
        "modules": sorted(m for m in ("bertcore", "trainer", "preprocess", "official")
                          if m in sys.modules),
    }))
""")


def test_loads_in_a_fresh_process_with_only_tensorflow_text(binary, tmp_path):
  # A copy elsewhere, with the original export and source vocabulary gone: nothing may point
  # back at them.
  moved = str(tmp_path / "moved")
  os.rename(binary["export_dir"], moved)
  vocab_backup = binary["vocab_path"] + ".bak"
  os.rename(binary["vocab_path"], vocab_backup)
  try:
    # -I: isolated mode, neither the repository nor PYTHONPATH on sys.path.
    result = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS, moved, json.dumps(TEXTS)],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
        env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
  finally:
    os.rename(moved, binary["export_dir"])
    os.rename(vocab_backup, binary["vocab_path"])
  assert result.returncode == 0, result.stderr[-2000:]
  got = json.loads(result.stdout.strip().splitlines()[-1])
  # Without tensorflow_text the load fails on the tokenizer's ops: tokenization is in-graph.
  assert "Op type not registered" in got["without_text"], got["without_text"]
  assert got["modules"] == []
  assert got["vocab_asset"] == os.path.join(moved, "assets", "vocab.txt")
  expected = serve(binary["loaded"], TEXTS)
  np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-6)
  assert got["label"] == [x.decode() for x in expected["label"]]


def test_per_file_move_puts_saved_model_pb_last(tmp_path, monkeypatch):
  """The object-store path of the final move (gs:// renames a directory object by object)."""
  def make(directory, files):
    for rel, content in files.items():
      path = directory / rel
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(content)
  new = {"saved_model.pb": "new", "fingerprint.pb": "new", "variables/variables.index": "new",
         "assets/vocab.txt": "new", "assets/metadata.json": "new"}
  make(tmp_path / "export.tmp-1", new)
  make(tmp_path / "export", {"saved_model.pb": "old", "variables/stale": "old"})
  moved = []
  real_rename = tf.io.gfile.rename

  def rename(src, dst, overwrite=False):
    moved.append(os.path.relpath(dst, tmp_path))
    real_rename(src, dst, overwrite)
  monkeypatch.setattr(tf.io.gfile, "rename", rename)
  export.move_into_place(str(tmp_path / "export.tmp-1"), str(tmp_path / "export"),
                          per_file=True)
  # First the old export is moved aside, then the files, saved_model.pb last.
  assert moved[0].startswith("export.old-")
  assert moved[-2:] == ["export/assets/metadata.json", "export/saved_model.pb"]
  assert sorted(moved[1:]) == sorted(f"export/{rel}" for rel in new)
  got = {str(p.relative_to(tmp_path / "export")): p.read_text()
         for p in (tmp_path / "export").rglob("*") if p.is_file()}
  assert got == new  # the stale file of the old export is gone
  assert os.listdir(tmp_path) == ["export"]


@pytest.mark.parametrize("head", ["binary", "multiclass", "multilabel"])
def test_probabilities_are_of_logits_over_the_temperature(tmp_path, head):
  vocab_path, text_encoder = tiny_setup(str(tmp_path))
  labels = ["no", "yes"] if head == "binary" else ["red", "green", "blue"]
  classifier = build_classifier(1 if head == "binary" else 3, seed=3)
  export_dir = str(tmp_path / "export")
  temperature = 2.75
  export.export_saved_model(classifier, text_encoder, labels, head,
                            None if head == "multiclass" else 0.5, export_dir, vocab_path,
                            temperature=temperature)
  loaded = tf.saved_model.load(export_dir)
  assert loaded.temperature.numpy() == np.float32(temperature)
  assert export_info.read_metadata(export_dir)["temperature"] == temperature
  out = serve(loaded, TEXTS)
  raw = reference_probabilities(classifier, text_encoder, head, TEXTS)
  # reference_probabilities of T = 1, undone and redone with T: sigmoid / softmax(logits / T).
  if head == "multiclass":
    logits = np.log(raw)
    e = np.exp(logits / temperature - (logits / temperature).max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True)
  else:
    logits = np.log(raw / (1 - raw))
    expected = 1 / (1 + np.exp(-logits / temperature))
  np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
  assert np.abs(out["probabilities"] - raw).max() > 1e-3   # T changed them
  if head == "multiclass":   # the argmax does not change
    np.testing.assert_array_equal(out["label_id"], raw.argmax(axis=1))


def test_an_export_without_a_temperature_serves_as_before(binary, tmp_path):
  """Exports made before temperature scaling have no `temperature` in their metadata: serving
  reads T = 1 for them, and their probabilities are the raw sigmoid."""
  export_dir = str(tmp_path / "old")
  shutil.copytree(binary["export_dir"], export_dir)
  path = os.path.join(export_dir, "assets", "metadata.json")
  metadata = json.load(open(path))
  del metadata["temperature"]
  with open(path, "w") as f:
    json.dump(metadata, f)
  assert export_info.temperature(export_info.check_export(export_dir)) == 1.0
  out = serve(tf.saved_model.load(export_dir), TEXTS)
  expected = reference_probabilities(binary["classifier"], binary["text_encoder"], "binary", TEXTS)
  np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
  assert export_info.temperature(export_info.read_metadata(binary["export_dir"])) == 1.0


def test_a_non_positive_temperature_is_refused(binary, tmp_path):
  for bad in (0.0, -1.0, float("nan"), None):
    with pytest.raises(ValueError, match="temperature must be a positive number"):
      export.export_saved_model(binary["classifier"], binary["text_encoder"], ["no", "yes"],
                                "binary", 0.5, str(tmp_path / "bad"), binary["vocab_path"],
                                temperature=bad)
