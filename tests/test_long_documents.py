"""Documents longer than the window (issue 38): the trainer reads them in windows, pools one
prediction per document, and the export cuts the same windows from raw text and from records.

A tiny random encoder on fake chunked data dirs (tests/trainer_fixtures.py): the class marker
sits only in a document's LAST pieces, past its first window, so a model that read only the
first window could not learn it.
"""
import json
import os

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from bertcore import schema, windows
from trainer import eval_loop
from trainer import input_pipeline
from trainer import model as model_lib
from trainer import plan as plan_lib
from trainer import strategy as strategy_lib
from trainer import train

GEOMETRY = windows.Geometry(chunk_length=10, chunk_overlap=2, max_chunks=6)  # 38 pieces


def late_marker_rows(n, seed, min_len=12, max_len=34):
  """Documents of filler words whose class marker ("good" / "bad") is among the last 3 pieces."""
  rng = np.random.RandomState(seed)
  rows = []
  for i in range(n):
    words = list(rng.randint(6, len(fx.VOCAB), size=rng.randint(min_len, max_len + 1)))
    label = int(rng.randint(2))
    words[len(words) - 1 - rng.randint(3)] = fx.GOOD_ID + label
    ids = [fx.CLS_ID] + [int(w) for w in words] + [fx.SEP_ID]
    rows.append((f"doc{i}", ids, [0] * len(ids), [label]))
  return rows


def as_text(ids):
  return " ".join(fx.VOCAB[i] for i in ids[1:-1])


@pytest.fixture(scope="module")
def chunked_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("chunked"))
  fx.write_data_dir(d, {"train": late_marker_rows(384, 1), "validation": late_marker_rows(64, 2),
                        "test": late_marker_rows(48, 3)},
                    max_seq_length=GEOMETRY.chunk_length, chunking=GEOMETRY)
  fx.write_vocab(d)
  return d


@pytest.fixture(scope="module")
def trained(chunked_dir, tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("run"))
  config = fx.tiny_config(chunked_dir, **{"model.chunk_pooling": "max", "train.epochs": 3})
  results = train.train_and_evaluate(config, chunked_dir, model_dir,
                                     strategy_lib.build_strategy("one_device"))
  strategy_lib.set_precision("float32")
  return model_dir, results


@pytest.mark.slow  # a training run; the default tier covers the pipeline, the model and
# the export's parity (test_long_documents_serving.py)
def test_training_reads_past_the_first_window(trained):
  model_dir, results = trained
  final = results["final"]
  assert final["validation"]["best_f1"] > 0.8          # the marker is only in late windows
  assert final["validation"]["num_examples"] == 64     # one prediction per document
  recorded = json.load(open(os.path.join(model_dir, "config.json")))["model"]
  assert (recorded["chunk_pooling"], recorded["chunk_length"], recorded["chunk_overlap"],
          recorded["max_chunks"]) == ("max", 10, 2, 6)


@pytest.mark.slow  # a training run; the default tier covers the pipeline, the model and
# the export's parity (test_long_documents_serving.py)
def test_export_cuts_the_same_windows_from_text_and_records(trained, chunked_dir):
  model_dir, _ = trained
  export_dir = os.path.join(model_dir, "export")
  metadata = json.load(open(os.path.join(export_dir, "assets", "metadata.json")))
  assert metadata["chunking"] == dict(GEOMETRY.to_json(), pooling="max")
  assert "serve_text_pair" not in metadata["signatures"]
  loaded = tf.saved_model.load(export_dir)
  # Documents up to 10x the window: the stored cap (38 pieces) applies to both paths.
  rows = late_marker_rows(12, 7, min_len=1, max_len=80)
  texts = [as_text(ids) for _, ids, _, _ in rows]
  from_text = loaded.signatures["serving_default"](text=tf.constant(texts))
  capped = [(i, ids[:1] + ids[1:-1][:GEOMETRY.max_pieces] + ids[-1:], t, y)
            for i, ids, t, y in rows]
  records = [schema.make_example(i, ids, [0] * len(ids), y).SerializeToString()
             for i, ids, _, y in capped]
  from_records = loaded.signatures["serve_examples"](examples=tf.constant(records))
  np.testing.assert_allclose(from_text["probabilities"].numpy(),
                             from_records["probabilities"].numpy(), atol=1e-6)
  # The raw-text export on the test documents gives the probabilities that the training's
  # own evaluation (input pipeline windows -> Keras model -> temperature) saved for them.
  _, saved = eval_loop.read_outputs(model_dir, "test")
  test_texts = [as_text(ids) for _, ids, _, _ in late_marker_rows(48, 3)]
  served = loaded.signatures["serving_default"](text=tf.constant(test_texts))
  np.testing.assert_allclose(np.sort(served["probabilities"].numpy()), np.sort(saved),
                             atol=1e-5)


def test_padding_windows_never_change_a_document(chunked_dir):
  manifest = schema.read_manifest(chunked_dir)
  # Every pooling with the binary head; the other heads once each (a build costs seconds).
  cases = [(p, "binary", 1) for p in ("mean", "max", "attention")] + [
      ("mean", "multiclass", 3), ("max", "multilabel", 3)]
  for pooling, head, labels in cases:
    config = fx.tiny_config(chunked_dir, **{"model.chunk_pooling": pooling,
                                            "model.head": head})
    m = manifest if head == "binary" else _with_labels(manifest, labels)
    classifier, _ = model_lib.build_classifier(config, m)
    rng = np.random.RandomState(0)
    word = rng.randint(4, 30, size=[2, 3, 10]).astype(np.int32)
    mask = np.ones_like(word)
    mask[1, 1:] = 0                   # document 1: one real window and two padding ones
    word[1, 1:] = 0
    batch = classifier({"input_word_ids": word, "input_mask": mask,
                        "input_type_ids": np.zeros_like(word)}, training=False).numpy()
    alone = classifier({"input_word_ids": word[1:, :1], "input_mask": mask[1:, :1],
                        "input_type_ids": np.zeros_like(word[1:, :1])}, training=False).numpy()
    assert batch.shape == (2, labels)
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-5, err_msg=f"{pooling} {head}")


def _with_labels(manifest, n):
  import dataclasses
  return dataclasses.replace(manifest, labels=[str(i) for i in range(n)])


def test_batches_are_documents_of_windows(chunked_dir):
  manifest = schema.read_manifest(chunked_dir)
  src = input_pipeline.source(chunked_dir, "validation", manifest, "binary", geometry=GEOMETRY)
  config = fx.tiny_config(chunked_dir)
  for padding, expect_most in (("longest", None), ("fixed", GEOMETRY.max_chunks)):
    config.train.padding = padding
    batches = list(input_pipeline.eval_batches(src, 16, config.train, config.data))
    assert sum(int(b["weights"].numpy().sum()) for b in batches) == 64
    for b in batches:
      word, mask = b["input_word_ids"].numpy(), b["input_mask"].numpy()
      assert word.ndim == 3 and word.shape[2] <= GEOMETRY.chunk_length
      windows_per_doc = (mask[:, :, 0] > 0).sum(axis=1)
      # longest: padded to the batch's most windows; fixed: always max_chunks (TPU shapes).
      assert word.shape[1] == (expect_most or windows_per_doc.max())
      assert (word[:, :, 0][mask[:, :, 0] > 0] == fx.CLS_ID).all()


def test_chunked_data_and_config_must_agree(chunked_dir, tmp_path):
  strategy = strategy_lib.build_strategy("one_device")
  config = fx.tiny_config(chunked_dir)
  with pytest.raises(schema.DataError, match="--config.model.chunk_pooling=mean"):
    plan_lib.plan_run(config, chunked_dir, str(tmp_path / "a"), strategy)
  plain = str(tmp_path / "plain")
  fx.tiny_data_dir(plain, n_train=32, n_val=8, n_test=8)
  fx.write_vocab(plain)
  pooled = fx.tiny_config(plain, **{"model.chunk_pooling": "mean"})
  with pytest.raises(schema.DataError, match="re-run preprocessing with --max_chunks"):
    plan_lib.plan_run(pooled, plain, str(tmp_path / "b"), strategy)
  too_long = fx.tiny_config(chunked_dir, **{"model.chunk_pooling": "mean",
                                            "model.chunk_length": 256})
  with pytest.raises(ValueError, match="chunk_length 256 exceeds the encoder's 128"):
    plan_lib.plan_run(too_long, chunked_dir, str(tmp_path / "c"), strategy)
  overlap = fx.tiny_config(chunked_dir, **{"model.chunk_pooling": "mean",
                                           "model.chunk_overlap": 8})
  with pytest.raises(ValueError, match="chunk_overlap must be in"):
    plan_lib.plan_run(overlap, chunked_dir, str(tmp_path / "d"), strategy)
  # Shorter windows from the same data: enough of them to cover the stored pieces.
  shorter = fx.tiny_config(chunked_dir, **{"model.chunk_pooling": "mean",
                                           "model.chunk_length": 6, "model.chunk_overlap": 0})
  plan = plan_lib.plan_run(shorter, chunked_dir, str(tmp_path / "e"), strategy)
  assert plan.geometry == windows.Geometry(6, 0, 10)       # 10 x 4 pieces cover 38
