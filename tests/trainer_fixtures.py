"""Shared fixtures for the trainer tests: a tiny vocabulary and fake preprocessed data dirs.

The records are written exactly as the preprocessing job writes them (bertcore.schema), so the
trainer is tested against the real contract without running Beam.
"""
import os
import posixpath

import bertcore  # noqa: F401  (before TensorFlow: selects Keras 2)
import numpy as np
import tensorflow as tf

from bertcore import schema, tokenization

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(REPO, "configs", "tiny.py")

# [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3, then 2 "signal" words and 26 filler words.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"] + [f"w{i}" for i in range(26)]
CLS_ID, SEP_ID, GOOD_ID, BAD_ID = 2, 3, 4, 5


def write_vocab(directory, tokens=VOCAB):
  path = os.path.join(directory, "vocab.txt")
  with open(path, "w") as f:
    f.write("\n".join(tokens) + "\n")
  return path


def example_rows(n, seed=0, num_labels=2, multilabel=False, min_len=1, max_len=20):
  """n rows of (id, input_ids, type_ids, label_ids) whose label is learnable from one token.

  Class k (k < num_labels) is marked by token 4 + k appearing in the text (binary: "good"/"bad").
  """
  rng = np.random.RandomState(seed)
  rows = []
  for i in range(n):
    words = list(rng.randint(6, len(VOCAB), size=rng.randint(min_len, max_len + 1)))
    if multilabel:
      label_ids = sorted(set(rng.choice(num_labels, size=rng.randint(0, num_labels + 1))))
    else:
      label_ids = [int(rng.randint(num_labels))]
    for k in label_ids:  # the marker token makes the task learnable
      words[rng.randint(len(words))] = 4 + k
    ids = [CLS_ID] + [int(w) for w in words] + [SEP_ID]
    rows.append((f"row{i}", ids, [0] * len(ids), [int(k) for k in label_ids]))
  return rows


def write_data_dir(data_dir, rows_by_split, labels=("0", "1"), num_shards=2, multi_label=False,
                   vocab=VOCAB, max_seq_length=32, compression=None, chunking=None):
  """Writes shards + manifest like `python -m preprocess.run` would; returns the manifest.

  chunking: a bertcore.windows.Geometry for whole documents (max_seq_length is then its
  chunk_length), else None.
  """
  splits = {}
  for split in schema.SPLITS:
    rows = rows_by_split.get(split, [])
    tf.io.gfile.makedirs(posixpath.join(data_dir, split))
    shards = {}
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    for s in range(num_shards):
      path = schema.shard_path(data_dir, split, s, num_shards, compression)
      mine = rows[s::num_shards]
      with tf.io.TFRecordWriter(path, options) as w:
        for example_id, ids, types, label_ids in mine:
          w.write(schema.make_example(example_id, ids, types, label_ids).SerializeToString())
      shards[posixpath.basename(path)] = len(mine)
    hist = {name: 0 for name in labels}
    for *_, label_ids in rows:
      for k in label_ids:
        hist[labels[k]] += 1
    lengths = [len(r[1]) for r in rows] or [0]
    splits[split] = {"rows": len(rows), "shards": shards, "label_histogram": hist,
                     "token_length": {"mean": float(np.mean(lengths)), "max": int(max(lengths))},
                     "truncated": 0}
  manifest = {
      "package_version": "0.1.0", "input_files": ["fake.csv"], "encoding": "utf-8",
      "columns": {"id": "id", "text": "text", "text_pair": None, "label": "label"},
      "labels": list(labels), "multi_label": multi_label,
      "vocab_sha256": tokenization.vocab_sha256(vocab), "vocab_size": len(vocab),
      "lower_case": True,
      "tokenizer": {"type": "FastBertTokenizer", "vocab_file": "vocab.txt", "lower_case": True},
      "max_seq_length": max_seq_length, "compression": compression, "num_shards": num_shards,
      "split_fractions": {"train": 0.8, "validation": 0.1, "test": 0.1},
      "rows_read": sum(len(r) for r in rows_by_split.values()),
      "rows_written": sum(len(r) for r in rows_by_split.values()),
      "rows_rejected": {}, "rows_rejected_total": 0, "dead_letter_file": "rejected.jsonl",
      "splits": splits, "plots": [],
      "chunking": chunking.to_json() if chunking else None,
  }
  schema.write_manifest(data_dir, manifest)
  return schema.read_manifest(data_dir)


def tiny_data_dir(data_dir, n_train=256, n_val=64, n_test=32, **kwargs):
  """A binary data dir with learnable labels (token "good" = class 0, "bad" = class 1)."""
  return write_data_dir(data_dir, {
      "train": example_rows(n_train, seed=1),
      "validation": example_rows(n_val, seed=2),
      "test": example_rows(n_test, seed=3),
  }, **kwargs)


def write_hub_encoder(directory, vocab=VOCAB, hidden_size=16):
  """A tiny BERT encoder saved in the TF-Hub SavedModel layout (assets/vocab.txt,
  do_lower_case), loadable with hub.KerasLayer like tfhub.dev's BERT encoders."""
  import tf_keras
  from trainer import encoders
  encoder = encoders.build_bert_encoder({
      "vocab_size": len(vocab), "hidden_size": hidden_size, "num_hidden_layers": 1,
      "num_attention_heads": 2, "intermediate_size": 2 * hidden_size,
      "max_position_embeddings": 64})
  inputs = {k: tf_keras.Input(shape=(None,), dtype=tf.int32, name=k)
            for k in ("input_word_ids", "input_mask", "input_type_ids")}
  model = tf_keras.Model(inputs, encoder(inputs))
  model.do_lower_case = tf.Variable(True, trainable=False)
  model.save(directory, include_optimizer=False, save_format="tf")
  os.makedirs(os.path.join(directory, "assets"), exist_ok=True)
  write_vocab(os.path.join(directory, "assets"), vocab)
  return directory


def tiny_config(data_dir, **overrides):
  """configs/tiny.py with the fixture vocabulary and overrides ({"train.epochs": 1, ...})."""
  from trainer import config as config_lib
  values = {"encoder.vocab_file": os.path.join(data_dir, "vocab.txt"), "wandb.mode": "disabled"}
  values.update(overrides)
  return config_lib.load_config_file(TINY_CONFIG, values)


def task_env(**extra):
  """The environment of a `python -m trainer.task` test process: W&B off, no GPU, repo on path."""
  env = dict(os.environ, WANDB_MODE="disabled", CUDA_VISIBLE_DEVICES="",
             PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
  env.update(extra)
  return env


def task_command(data_dir, model_dir, *flags):
  """`python -m trainer.task` on configs/tiny.py, with the data dir's vocab.txt checked."""
  import sys
  return [sys.executable, "-m", "trainer.task", f"--config={TINY_CONFIG}",
          f"--data_dir={data_dir}", f"--model_dir={model_dir}",
          f"--config.encoder.vocab_file={os.path.join(data_dir, 'vocab.txt')}", *flags]
