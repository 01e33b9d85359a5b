"""tf.data input pipelines: manifest shards -> padded, length-bucketed batches for the model.

Records hold unpadded token ids (bertcore.schema). Here they are read per input pipeline
(each pipeline gets its own subset of shard files), shuffled with a per-epoch seed, parsed in
batches (batched parsing is several times faster than per-record parsing) and bucketed by
length: a pool of POOL_BATCHES batches is sorted by length and cut into batches of similar
lengths, each padded (config.train.padding) to its longest row ("longest": steps that are not
compiled per shape), or to the smallest of a few fixed lengths (e.g. 16/32/64/128) that fits
("bucket": the set of shapes stays small and static for XLA / TPU). Short texts are not
padded to max_seq_length. (Dataset.bucket_by_sequence_length does the same per example, at under a fifth
of the speed on 2 cores: bench_input_pipeline in docs/benchmarks.md's retired benchmarks.)

Output elements (per replica): a dict
  input_word_ids, input_mask, input_type_ids: int32 [batch, padded_len]
  labels: binary float32 [batch, 1]; multiclass int32 [batch]; multilabel float32 [batch, C];
    -1 for a row without a label id, which only a Source with unlabeled=True reads
  weights (eval only): float32 [batch], 0 for the filler rows that make every pipeline
    yield the same number of full batches.
No py_function anywhere, so the pipeline runs in TF's C++ threads and serialises into graphs.
"""
import dataclasses
import functools
import math
import posixpath

import numpy as np
import tensorflow as tf
from absl import logging

from bertcore import cli, names, schema, windows

MODEL_INPUTS = names.MODEL_INPUTS
POOL_BATCHES = 64   # batches sorted together by length when bucketing
FILLER_ID = "\x00filler"  # example_id of the rows that pad evaluation to equal batches


def _as_written(fn):
  """fn for Dataset.map / interleave / flat_map, traced as written, not through autograph.

  The pipeline's functions branch only in Python, on static facts (the head, the replicas);
  autograph's source conversion of them and of everything they call bought nothing and cost
  seconds of every trainer run (its start and each evaluation pass).
  """
  return tf.autograph.experimental.do_not_convert(fn)


def split_shards(data_dir, split, manifest):
  """[(path, rows)] for a split, from the manifest (sorted by file name).

  rows is None when the manifest does not record per-shard counts.
  """
  info = manifest.splits.get(split)
  if info is None:
    raise schema.DataError(f"{data_dir}/{schema.MANIFEST} has no {split!r} split")
  compression = manifest.compression
  if info.shards:
    return [(posixpath.join(data_dir, split, name), int(rows))
            for name, rows in sorted(info.shards.items())]
  files = sorted(tf.io.gfile.glob(schema.shard_pattern(data_dir, split, compression)))
  return [(f, None) for f in files]


def count_records(path, compression=None):
  """Number of records in one TFRecord file; raises tf.errors.DataLossError on corruption."""
  return int(_record_counter(compression or "")(tf.constant(path)))


@functools.lru_cache(maxsize=None)
def _record_counter(compression):
  """A tf.function path -> record count, traced once per compression type."""
  @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
  def count(path):
    # In batches: reduce's per-element step would cost more than reading the records.
    ds = tf.data.TFRecordDataset(path, compression_type=compression).batch(4096)
    return ds.reduce(tf.constant(0, tf.int64), lambda n, b: n + tf.size(b, tf.int64))
  return count


def verify_shards(shards, compression=None, on_corrupt="error"):
  """Checks every shard is present, readable and holds the manifest's number of records.

  Args:
    shards: [(path, rows)] from split_shards.
    on_corrupt: "error" raises DataError naming the file; "skip" drops it (and warns).
  Returns:
    (good_shards, skipped): good_shards [(path, rows)] with counted rows; skipped [(path, why)].
  """
  good, skipped = [], []
  for path, rows in shards:
    problem = None
    if not tf.io.gfile.exists(path):
      problem = "is missing"
    else:
      try:
        counted = count_records(path, compression)
        if rows is not None and counted != rows:
          problem = (f"holds {counted} records but the manifest says {rows} "
                     "(truncated or replaced)")
      except tf.errors.OpError as e:
        problem = f"is corrupt ({cli.error_line(e)})"
    if problem is None:
      good.append((path, counted))
    elif on_corrupt == "skip":
      logging.warning("skipping shard %s: it %s", path, problem)
      skipped.append((path, problem))
    else:
      raise schema.DataError(f"shard {path} {problem}; re-run preprocessing, or set "
                             "--config.data.on_corrupt_shard=skip to train without it")
  return good, skipped


def find_corrupt_shard(shards, compression=None):
  """After a read error: the first shard that fails to read, with the reason, or None."""
  for path, _ in shards:
    try:
      count_records(path, compression)
    except tf.errors.OpError as e:
      return path, cli.error_line(e)
  return None


def label_order(path, compression=None, num_labels=2, min_rows=1000):
  """How far one shard's rows are from a random order by label.

  Returns the label shares of the shard's first and last tenth and their total variation
  distance (0 = the same mix; 1 = no label in common), or None below min_rows rows, where
  a tenth is too small to tell. In a shard of random order a tenth of 100 rows or more
  rarely differs from another by over 0.25; a CSV sorted by label, written in file order,
  gives distances near 1. Only the first label id of a row counts (multilabel: one signal).
  """
  ds = tf.data.TFRecordDataset(path, compression_type=compression or "").batch(4096).map(
      lambda s: tf.io.parse_example(s, {schema.LABEL_IDS: tf.io.RaggedFeature(tf.int64)}))
  labels = np.concatenate([b[schema.LABEL_IDS][:, :1].flat_values.numpy() for b in ds] or
                          [np.zeros([0], np.int64)])
  if len(labels) < min_rows:
    return None
  tenth = len(labels) // 10
  first, last = (np.bincount(part, minlength=num_labels) / tenth
                 for part in (labels[:tenth], labels[-tenth:]))
  distance = float(np.abs(first - last).sum() / 2)
  return first, last, distance


def padded_lengths(bucket_boundaries, max_seq_length):
  """The padded lengths batches may have: boundaries below max_seq_length, and max_seq_length."""
  return sorted({int(b) for b in bucket_boundaries if b < max_seq_length} | {int(max_seq_length)})


def assign_shards(shards, num_pipelines, pipeline_id):
  """The shard files one input pipeline reads, and its row count.

  Non-empty shards are dealt round-robin by sorted name, so every worker computes the same,
  disjoint assignment. With fewer non-empty shards than pipelines, every pipeline reads all
  files and keeps every num_pipelines-th record (correct, but each reads everything).
  Returns:
    (files, rows, element_sharded)
  """
  nonempty = [(p, r) for p, r in shards if r is None or r > 0]
  if num_pipelines == 1:
    return [p for p, _ in nonempty], _sum_rows(nonempty), False
  if len(nonempty) >= num_pipelines:
    mine = nonempty[pipeline_id::num_pipelines]
    return [p for p, _ in mine], _sum_rows(mine), False
  total = _sum_rows(nonempty)
  rows = None if total is None else len(range(pipeline_id, total, num_pipelines))
  return [p for p, _ in nonempty], rows, True


def _sum_rows(shards):
  if any(r is None for _, r in shards):
    return None
  return sum(r for _, r in shards)


def label_index(labels, positive_label):
  """Index of the binary head's positive class ('' = labels[1])."""
  if positive_label:
    if positive_label not in labels:
      raise schema.DataError(f"positive_label {positive_label!r} is not one of the data's "
                             f"labels {labels}")
    return labels.index(positive_label)
  if len(labels) != 2:
    raise schema.DataError(f"a binary head on {len(labels)} labels {labels} needs "
                           "--config.model.positive_label=<the positive class>")
  return 1


def _to_features(parsed, head, num_classes, positive_index, geometry=None, unlabeled=False):
  """Parsed chunk -> ragged model inputs and dense labels (vectorised over the chunk).

  With a geometry (documents read in windows) the inputs are [chunk, (windows), (len)]; the
  documents are single texts, so every type id is 0. unlabeled: rows without a label id get
  labels of -1 (a distillation's unlabeled rows) instead of failing the check.
  """
  ids = tf.cast(parsed[schema.INPUT_IDS], tf.int32)          # [chunk, (len)]
  if geometry is None:
    type_ids = tf.cast(parsed[schema.TYPE_IDS], tf.int32)
  else:
    ids = windows.cut(ids, geometry)                         # [chunk, (windows), (len)]
    type_ids = tf.zeros_like(ids)
  features = {
      "input_word_ids": ids,
      "input_mask": tf.ones_like(ids),
      "input_type_ids": type_ids,
  }
  label_ids = tf.cast(parsed[schema.LABEL_IDS], tf.int32)    # [chunk, (n)]
  features["labels"] = _labels(label_ids, head, num_classes, positive_index, unlabeled)
  return features


def _labels(label_ids, head, num_classes, positive_index, unlabeled):
  """A chunk's label ids [chunk, (n)] -> targets: multilabel multi-hot [chunk, C], binary 0/1
  [chunk, 1], multiclass class ids [chunk]. Single-label heads need exactly one label id per
  row; with unlabeled, at most one, and a row without one gets -1 (not multilabel, where a
  labelled row may have no label: trainer.plan refuses that mix)."""
  if head == "multilabel":
    hot = tf.reduce_sum(tf.one_hot(label_ids, num_classes), axis=1)  # [chunk, C]
    return tf.minimum(hot.to_tensor() if isinstance(hot, tf.RaggedTensor) else hot, 1.0)
  lengths, one = label_ids.row_lengths(), tf.constant(1, tf.int64)
  needs = f"needs exactly one label id for a {head} head"
  check = (tf.debugging.assert_less_equal(lengths, one, message=f"every labelled example {needs}")
           if unlabeled else
           tf.debugging.assert_equal(lengths, one, message=f"every example {needs}"))
  with tf.control_dependencies([check]):
    first = label_ids.to_tensor(-1, shape=[None, 1])[:, 0]  # [chunk], -1 where missing
  if head == "binary":
    positive = tf.cast(tf.equal(first, positive_index), tf.float32)
    return tf.where(first < 0, -1.0, positive)[:, None]
  return first


@dataclasses.dataclass(frozen=True)
class Source:
  """What one split's input pipelines read, and how its labels become model targets."""
  data_dir: str
  split: str
  shards: tuple             # ((path, rows), ...), rows None when the manifest lacks counts
  compression: object       # None | "GZIP"
  labels: tuple             # the data's labels, label id = index
  max_seq_length: int
  head: str                 # binary | multiclass | multilabel: the label format
  positive_label: str = ""  # binary: the positive class ("" = labels[1])
  geometry: object = None   # windows.Geometry: documents read in windows; None: one each
  unlabeled: bool = False   # some shards hold rows without labels (labels -1: _to_features)


def source(data_dir, split, manifest, head, positive_label="", shards=None, geometry=None,
           unlabeled=False):
  """The Source of a split from its manifest (shards default to the manifest's).

  geometry: the windows of a chunked data dir (trainer.plan.resolve_chunks), else None.
  unlabeled: shards include rows without labels (a distillation's config.distill.unlabeled_dir).
  """
  if shards is None:
    shards = split_shards(data_dir, split, manifest)
  length = geometry.chunk_length if geometry else int(manifest.max_seq_length)
  return Source(data_dir, split, tuple(shards), manifest.compression,
                tuple(manifest.labels), length, head, positive_label, geometry, unlabeled)


@dataclasses.dataclass(frozen=True)
class _Pipeline:
  """Where one input pipeline sits among the replicas (from a tf.distribute.InputContext)."""
  num_pipelines: int
  pipeline_id: int
  replicas: int

  @property
  def replicas_here(self):
    return self.replicas // self.num_pipelines


def _pipeline(input_context, global_batch_size):
  ctx = input_context or tf.distribute.InputContext()
  if global_batch_size % ctx.num_replicas_in_sync:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{ctx.num_replicas_in_sync} replicas")
  return _Pipeline(ctx.num_input_pipelines, ctx.input_pipeline_id, ctx.num_replicas_in_sync)


def _read_records(src, pipeline, cycle_length, shuffle_seed=None):
  """This pipeline's serialized records (its own shard files); file order shuffled by
  shuffle_seed (None: sorted). Returns (dataset, rows of this pipeline or None)."""
  files, rows, element_sharded = assign_shards(src.shards, pipeline.num_pipelines,
                                               pipeline.pipeline_id)
  if not files:
    raise schema.DataError(f"split {src.split!r} of {src.data_dir} has no rows")
  if element_sharded:
    logging.warning("split %s has fewer non-empty shards (%d) than input pipelines (%d): each "
                    "pipeline reads every shard and keeps 1 record in %d; write more shards",
                    src.split, len(files), pipeline.num_pipelines, pipeline.num_pipelines)
  logging.info("input pipeline %d/%d reads %s shards: %s", pipeline.pipeline_id,
               pipeline.num_pipelines, src.split, [posixpath.basename(f) for f in files])
  ds = tf.data.Dataset.from_tensor_slices(files)
  if shuffle_seed is not None:
    ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
  ds = ds.interleave(
      _as_written(lambda f: tf.data.TFRecordDataset(f, compression_type=src.compression or "")),
      cycle_length=max(1, min(cycle_length, len(files))),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if element_sharded:
    ds = ds.shard(pipeline.num_pipelines, pipeline.pipeline_id)
  return ds, rows


def _padded_lengths_of(src, train_config):
  """The lengths a batch may be padded to, for a resolved config.train.padding."""
  padding = train_config.padding
  if padding == "bucket":
    return padded_lengths(train_config.bucket_boundaries, src.max_seq_length)
  if padding == "longest":
    return list(range(1, src.max_seq_length + 1))
  if padding == "fixed":
    return [src.max_seq_length]
  raise ValueError(f"config.train.padding={padding!r} must be resolved to longest, bucket or "
                   "fixed before input pipelines are built (trainer.plan.resolve_padding)")


def window_counts(padding, max_chunks):
  """The window counts a batch of documents may be padded to: any (longest), powers of two
  and max_chunks (bucket: few shapes for XLA / TPU), or max_chunks (fixed)."""
  if padding == "longest":
    return list(range(1, max_chunks + 1))
  if padding == "bucket":
    return sorted({2 ** i for i in range(max_chunks.bit_length()) if 2 ** i < max_chunks}
                  | {max_chunks})
  return [max_chunks]


def _shapes(src, train_config):
  """(lengths, window counts or None) a batch may be padded to, as int32 constants."""
  lengths = tf.constant(_padded_lengths_of(src, train_config), tf.int32)
  if src.geometry is None:
    return lengths, None
  return lengths, tf.constant(window_counts(train_config.padding, src.geometry.max_chunks),
                              tf.int32)


def _features_fn(src):
  """parsed examples -> ragged model inputs and labels in the head's format."""
  positive = label_index(list(src.labels), src.positive_label) if src.head == "binary" else -1
  return lambda parsed: _to_features(parsed, src.head, len(src.labels), positive, src.geometry,
                                     src.unlabeled)


def train_batches(src, train_config, data_config, *, input_context=None, epoch=0,
                  skip_steps=0):
  """One input pipeline's training batches of one epoch's order, repeated forever.

  Args:
    src: the train Source.
    train_config: config.train (global_batch_size, padding, bucket_boundaries,
      shuffle_buffer (0 = all of this pipeline's records), seed).
    data_config: config.data (cycle_length).
    input_context: a tf.distribute.InputContext (None = one pipeline, one replica).
    epoch: int or int64 tensor: the order is a function of (seed, epoch) only.
    skip_steps: steps of this order already consumed (resume mid-epoch).
  Returns:
    a dataset of one replica's batches (global / replicas examples), no remainders.
  """
  pipeline = _pipeline(input_context, train_config.global_batch_size)
  batch_size = train_config.global_batch_size // pipeline.replicas
  # A fresh, reproducible order per epoch (epoch may be a tensor: see train_stream).
  epoch_seed = tf.cast(train_config.seed, tf.int64) + 7919 * tf.cast(epoch, tf.int64)
  ds, rows = _read_records(src, pipeline, data_config.cycle_length, shuffle_seed=epoch_seed)
  buffer = train_config.shuffle_buffer or rows  # 0: all of this pipeline's records
  if not buffer:
    raise ValueError("config.train.shuffle_buffer=0 (the whole split) needs per-shard row "
                     "counts in the manifest; resolve it first (trainer.plan.resolve_shuffle)")
  ds = ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=True)
  # Repeat the records, not the batches: no partial batch at an epoch boundary, and a
  # pipeline with fewer rows than its share of steps wraps around.
  ds = ds.repeat()
  shapes = _shapes(src, train_config)
  to_features = _features_fn(src)
  if all(x.shape[0] == 1 for x in shapes if x is not None):  # one shape: nothing to sort
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(_as_written(lambda s: _pad(to_features(schema.parse_examples(s)), shapes)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  else:
    ds = _bucketed(ds, to_features, shapes, pipeline.replicas_here, batch_size, epoch_seed)
  if skip_steps:
    ds = ds.skip(skip_steps * pipeline.replicas_here)
  return ds.prefetch(tf.data.AUTOTUNE)


def _bucketed(records, to_features, shapes, r, batch_size, seed):
  """Length bucketing, vectorised: a pool of batches is parsed at once, sorted by length and
  cut into steps of neighbouring lengths, each padded to the smallest padded length that
  fits. A step is the r consecutive batches this pipeline feeds its r replicas, all of one
  shape: TPU replicas run one program, and a GPU step waits for its slowest replica anyway.
  (Per-example group_by_window is several times slower.)"""
  steps_per_pool = max(1, POOL_BATCHES // r)
  ds = records.batch(steps_per_pool * r * batch_size, drop_remainder=True)
  ds = ds.map(_as_written(
      lambda s: _sorted_batches(to_features(schema.parse_examples(s)), r * batch_size)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.unbatch()                                  # one step: [r * B, (len)]
  ds = ds.map(_as_written(lambda x: _pad(x, shapes)), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  # Undo the short-to-long order within a pool, reproducibly.
  ds = ds.shuffle(steps_per_pool, seed=seed, reshuffle_each_iteration=True)
  if r > 1:
    ds = ds.map(_as_written(lambda x: _split_step(x, r, batch_size))).unbatch()
  return ds


def eval_batches(src, global_batch_size, train_config, data_config, *, input_context=None,
                 pad_to_equal_batches=True, pool_batches=POOL_BATCHES):
  """One input pipeline's evaluation batches: one pass in a fixed order.

  Rows are sorted by length within pools of pool_batches steps before batching, so that a
  batch's rows have similar lengths and little padding (labels, weights and outputs travel
  with their row, so the metrics do not depend on the order).
  Args:
    src: the Source of the split to evaluate.
    global_batch_size: examples per step over all replicas (config.eval.global_batch_size).
    train_config: config.train (padding, bucket_boundaries: the shapes the model saw).
    data_config: config.data (cycle_length).
    input_context: a tf.distribute.InputContext (None = one pipeline, one replica).
    pad_to_equal_batches: add filler rows (weights 0) so that every pipeline yields the same
      number of full batches (the steps of a distributed evaluation must match).
    pool_batches: steps sorted together (1 = file order); only with pad_to_equal_batches.
  Returns:
    a dataset of one replica's batches, with float32 `weights` [batch] (0 = filler).
  """
  pipeline = _pipeline(input_context, global_batch_size)
  batch_size = global_batch_size // pipeline.replicas
  ds, rows = _read_records(src, pipeline, data_config.cycle_length)
  if pad_to_equal_batches:
    if rows is None:
      raise schema.DataError(f"the manifest of {src.data_dir} lacks per-shard row counts, "
                             "needed to give every input pipeline equal batches")
    steps = eval_steps(src.shards, pipeline.num_pipelines, global_batch_size, pipeline.replicas)
    filler = schema.make_example(FILLER_ID, [0], [0], [] if src.head == "multilabel" else [0])
    ds = ds.concatenate(tf.data.Dataset.from_tensors(filler.SerializeToString()).repeat())
    ds = ds.take(steps * pipeline.replicas_here * batch_size)
  # As in training, the r batches of one step share one shape (r = replicas fed here).
  r = pipeline.replicas_here if pad_to_equal_batches else 1
  shapes = _shapes(src, train_config)
  to_features = _features_fn(src)

  def eval_features(serialized):
    parsed = schema.parse_examples(serialized)
    x = to_features(parsed)
    x["weights"] = tf.cast(tf.not_equal(parsed[schema.EXAMPLE_ID], FILLER_ID), tf.float32)
    return x
  if pad_to_equal_batches and pool_batches > 1:
    # Every pool, the last one too, is a whole number of steps: the rows (with filler) are.
    ds = ds.batch(pool_batches * r * batch_size)
    ds = ds.map(_as_written(lambda s: _sorted_batches(eval_features(s), r * batch_size)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
  else:
    ds = ds.batch(r * batch_size, drop_remainder=pad_to_equal_batches)
    ds = ds.map(_as_written(eval_features), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.map(_as_written(lambda x: _pad(x, shapes)), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  if r > 1:
    ds = ds.map(_as_written(lambda x: _split_step(x, r, batch_size))).unbatch()
  return ds.prefetch(tf.data.AUTOTUNE)


def train_stream(src, train_config, data_config, *, steps_per_epoch, first_epoch,
                 skip_steps=0, input_context=None):
  """All remaining training batches of one input pipeline, epoch after epoch, as one dataset.

  Epoch e is train_batches(..., epoch=e) cut to steps_per_epoch steps, so its order depends
  only on (seed, e); the stream starts at first_epoch with skip_steps of it already consumed,
  which reproduces exactly the batches an uninterrupted run would have seen. One dataset for
  the whole run means one iterator, so the training function is traced once.
  Args: as train_batches, plus the epochs [first_epoch, train_config.epochs).
  """
  ctx = input_context or tf.distribute.InputContext()
  replicas_here = ctx.num_replicas_in_sync // ctx.num_input_pipelines

  def one_epoch(epoch):
    return train_batches(src, train_config, data_config, input_context=input_context,
                         epoch=epoch).take(steps_per_epoch * replicas_here)
  stream = tf.data.Dataset.range(first_epoch, train_config.epochs).flat_map(
      _as_written(one_epoch))
  if skip_steps:
    stream = stream.skip(skip_steps * replicas_here)
  return stream.prefetch(tf.data.AUTOTUNE)


def _sizes(ids):
  """Ids per example: of ragged [N, (len)] or, for windows, [N, (windows), (len)]."""
  if ids.ragged_rank == 1:
    return ids.row_lengths()
  return tf.math.segment_sum(ids.values.row_lengths(), ids.value_rowids())


def _sorted_batches(features, batch_size):
  """A pool [K*B] of ragged examples -> [K, B] batches, sorted by size (ids; documents read in
  windows: their ids in all windows, so a batch of short posts does not pay for a long one)."""
  order = tf.argsort(_sizes(features["input_word_ids"]), stable=True)
  out = {}
  for k, v in features.items():
    v = tf.gather(v, order)
    if isinstance(v, tf.RaggedTensor):
      out[k] = tf.RaggedTensor.from_uniform_row_length(v, batch_size)   # [K, B, (len)]
    else:
      out[k] = tf.reshape(v, tf.concat([[-1, batch_size], tf.shape(v)[1:]], 0))
  return out


def _split_step(features, replicas, batch_size):
  """[R * B, ...] -> [R, B, ...]: one batch per replica, for unbatch()."""
  return {k: tf.reshape(v, tf.concat([[replicas, batch_size], tf.shape(v)[1:]], 0))
          for k, v in features.items()}


def _fit(boundaries, longest):
  """The smallest boundary >= longest (the last one if none is)."""
  longest = tf.cast(longest, tf.int32)
  index = tf.minimum(tf.searchsorted(boundaries, [longest])[0], tf.size(boundaries) - 1)
  return tf.gather(boundaries, index)


def _pad(features, shapes):
  """Ragged inputs -> dense int32, each axis padded to the smallest allowed size that fits.

  shapes: (lengths, counts) from _shapes. Rows [B, (len)] -> [B, L]; documents read in
  windows [B, (windows), (len)] -> [B, W, L] (counts: the allowed window counts W).
  """
  lengths, counts = shapes
  ids = features["input_word_ids"]
  out = dict(features)
  batch = ids.nrows(out_type=tf.int32)
  if counts is None:
    shape = tf.stack([batch, _fit(lengths, tf.reduce_max(ids.row_lengths()))])
  else:
    shape = tf.stack([batch, _fit(counts, tf.reduce_max(ids.row_lengths())),
                      _fit(lengths, tf.reduce_max(ids.values.row_lengths()))])
  for k in MODEL_INPUTS:
    out[k] = features[k].to_tensor(0, shape=shape)
    out[k].set_shape([features[k].shape[0]] + [None] * (ids.ragged_rank))
  return out


def eval_steps(shards, num_pipelines, global_batch_size, replicas):
  """Evaluation steps: enough for the pipeline with the most rows (all pipelines run as many)."""
  batch_size = global_batch_size // replicas
  per_step = batch_size * (replicas // num_pipelines)
  most = max(assign_shards(shards, num_pipelines, i)[1] for i in range(num_pipelines))
  return max(1, math.ceil(most / per_step))


def steps_per_epoch(train_rows, global_batch_size):
  """Full global batches in one pass over the training rows."""
  if train_rows < global_batch_size:
    raise schema.DataError(f"the train split has {train_rows} rows, fewer than one global "
                           f"batch of {global_batch_size}")
  return train_rows // global_batch_size
