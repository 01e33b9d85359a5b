"""The checks before a run builds anything, and what they found: a RunPlan.

Everything the trainer needs from the data's manifest is read here (and kept in the plan), so
that a bad data dir, config or model_dir is refused with one line before any model exists.
"""
import dataclasses
import os
import posixpath
import shutil
import uuid

import tensorflow as tf

from bertcore import schema, windows
from trainer import buckets, checkpointing
from trainer import config as config_lib
from trainer import input_pipeline
from trainer import model as model_lib

# Config fields that fix the meaning of a checkpoint or of a step number: a re-run into an
# existing model_dir may not change them (epochs, learning rate, logging, ... may change).
RESUME_FIXED = ("encoder", "model", "train.global_batch_size", "train.seed", "train.padding",
                "train.bucket_boundaries", "train.shuffle_buffer", "train.steps_per_epoch",
                "distill.unlabeled_dir")
EXPORT_DIR = "export"


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """What the checks found: the data, the label names and the length of the run."""
  data_dir: str
  model_dir: str
  manifest: dict            # the data's manifest.json (read once, here)
  labels: tuple             # the data's labels, label id = index
  label_names: tuple        # the model's outputs: binary ("not <pos>" or the other, <pos>)
  shards: dict              # split -> [(path, rows)] to read
  skipped_shards: tuple     # ({"file", "problem"}, ...) dropped by on_corrupt_shard=skip
  rows: dict                # split -> rows
  labelled: dict            # split -> whether it has labels to evaluate against
  steps_per_epoch: int
  total_steps: int
  vocab_file: str           # the encoder's vocab.txt, or None (random encoder without one)
  bucket_boundaries: tuple  # the padded lengths of padding=bucket (resolve_boundaries)
  boundaries_from: str      # where they come from: "config", "config.json", "manifest"
  padding: str             # longest | bucket | fixed: config.train.padding resolved
  shuffle_buffer: int      # config.train.shuffle_buffer resolved (records)
  shuffle_covers: str      # what it covers, for the start-up line
  order_warning: str       # "" or a `warning:` line: a train shard looks ordered by label
  geometry: object = None  # windows.Geometry of documents read in windows (resolve_chunks)
  unlabeled_rows: int = 0  # of config.distill.unlabeled_dir, in shards["train"] and rows["train"]

  @property
  def compression(self):
    return self.manifest.compression

  def source(self, split, model_config):
    """The input_pipeline.Source of a split (its checked shards)."""
    return input_pipeline.source(self.data_dir, split, self.manifest, model_config.head,
                                 model_config.positive_label, shards=self.shards[split],
                                 geometry=self.geometry,
                                 unlabeled=split == "train" and self.unlabeled_rows > 0)


def plan_run(config, data_dir, model_dir, strategy):
  """Checks the config, data, model_dir and resume compatibility; returns the RunPlan.

  Raises:
    schema.DataError / ValueError: one line saying what is wrong and how to fix it.
  """
  data_dir, model_dir = data_dir.rstrip("/"), model_dir.rstrip("/")
  config_lib.validate(config)
  manifest = schema.read_manifest(data_dir)
  labels = tuple(manifest.labels)
  label_names = _label_names(config, manifest, labels, data_dir)
  vocab_file = model_lib.check_encoder_fits_data(config.encoder, manifest)
  _check_batches_fit(config, strategy)
  check_model_dir_writable(model_dir)
  shards, skipped = _read_shards(config, data_dir, manifest)
  rows = {s: _rows(shards[s], manifest, s) for s in schema.SPLITS}
  unlabeled, unlabeled_rows, bad = _unlabeled_shards(config, manifest)
  shards["train"], rows["train"] = shards["train"] + unlabeled, rows["train"] + unlabeled_rows
  skipped += bad
  steps_per_epoch = (config.train.steps_per_epoch or input_pipeline.steps_per_epoch(
      rows["train"], config.train.global_batch_size))
  previous = config_lib.read_config_json(model_dir)
  geometry = resolve_chunks(config, manifest, data_dir)
  config = with_chunks(config, geometry)
  padding = resolve_padding(config, previous, strategy)
  config = with_boundaries(config, config.train.bucket_boundaries, padding)
  boundaries, boundaries_from = resolve_boundaries(config, manifest, previous, data_dir)
  shuffle_buffer, shuffle_covers = resolve_shuffle(config, previous, shards["train"],
                                                   rows["train"], manifest.compression)
  _check_resume_compatible(with_boundaries(config, boundaries, padding, shuffle_buffer),
                           previous, model_dir)
  labelled = {s: s in manifest.splits and sum(manifest.splits[s].label_histogram.values()) > 0
              for s in schema.SPLITS}
  order_warning = check_label_order(shards["train"], manifest, shuffle_buffer >= rows["train"])
  return RunPlan(data_dir, model_dir, manifest, labels, tuple(label_names), shards,
                 tuple(skipped), rows, labelled, steps_per_epoch,
                 steps_per_epoch * config.train.epochs, vocab_file, boundaries,
                 boundaries_from, padding, shuffle_buffer, shuffle_covers, order_warning,
                 geometry, unlabeled_rows)


def resolve_chunks(config, manifest, data_dir):
  """The windows a chunked data dir's documents are read in (a windows.Geometry), or None.

  config.model.chunk_length / chunk_overlap / max_chunks default to the data's geometry
  (0 / -1 / 0); max_chunks=0 takes as many windows as the data's stored pieces need. Raises
  a one-line error for chunked data without config.model.chunk_pooling (and the reverse),
  or windows that do not fit the encoder.
  """
  m = config.model
  if manifest.chunking is None:
    if m.chunk_pooling:
      raise schema.DataError(
          f"--config.model.chunk_pooling={m.chunk_pooling} reads documents in windows, but "
          f"{data_dir} holds texts truncated to {manifest.max_seq_length} ids; re-run "
          "preprocessing with --max_chunks, or drop --config.model.chunk_pooling")
    return None
  stored = windows.Geometry.from_json(manifest.chunking)
  if not m.chunk_pooling:
    raise schema.DataError(
        f"{data_dir} holds whole documents (preprocessed with --max_chunks="
        f"{stored.max_chunks}): set --config.model.chunk_pooling=mean|max|attention to read "
        "them in windows, or re-run preprocessing without --max_chunks to truncate them")
  length = m.chunk_length or stored.chunk_length
  overlap = stored.chunk_overlap if m.chunk_overlap < 0 else m.chunk_overlap
  positions = model_lib.encoder_positions(config.encoder)
  unbounded = windows.Geometry(length, overlap, stored.max_pieces + 1)
  unbounded.check(positions, "--config.model.")
  max_chunks = m.max_chunks or unbounded.num_windows(stored.max_pieces)
  return windows.Geometry(length, overlap, max_chunks).check(positions, "--config.model.")


def with_chunks(config, geometry):
  """A copy of config whose model.chunk_* are the resolved geometry's (config.json records
  them; a resumed run must keep them)."""
  if geometry is None:
    return config
  config = config.copy_and_resolve_references()
  config.model.chunk_length = geometry.chunk_length
  config.model.chunk_overlap = geometry.chunk_overlap
  config.model.max_chunks = geometry.max_chunks
  return config


def resolve_padding(config, previous_config, strategy):
  """config.train.padding, with "auto" resolved.

  auto: the padding an earlier run of this model_dir recorded in its config.json (a resumed
  run keeps its shapes); else "bucket" when train.bucket_boundaries are set or the step is
  compiled per shape (TPUStrategy, config.xla), since every new shape is then a new program
  ("fixed" on a multi-host TPU, whose hosts bucket apart); else "longest" (each batch padded
  to its longest row: on CPUs and GPUs without XLA a new shape costs little; see
  bench_step in docs/benchmarks.md).
  """
  padding = config.train.padding
  if padding != "auto":
    return padding
  recorded = ((previous_config or {}).get("train") or {}).get("padding")
  if recorded and recorded != "auto":
    return recorded
  tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  if tpu and getattr(strategy.extended, "num_hosts", 1) > 1:
    return "fixed"
  if tpu or config.xla or config.train.bucket_boundaries:
    return "bucket"
  return "longest"


def resolve_boundaries(config, manifest, previous_config, data_dir):
  """The run's bucket boundaries, and where they come from.

  config.train.bucket_boundaries ("config"); when it is (), the ones a previous run of this
  model_dir recorded in its config.json (a resumed run keeps its shapes: "config.json"), else
  the ones buckets.derive_boundaries fits to the train split's token lengths ("manifest").
  Returns:
    (tuple of ints, source)
  """
  explicit = tuple(int(b) for b in config.train.bucket_boundaries)
  if explicit or config.train.padding != "bucket":
    return explicit, "config"
  recorded = ((previous_config or {}).get("train") or {}).get("bucket_boundaries")
  if recorded:
    return tuple(int(b) for b in recorded), "config.json"
  train = manifest.splits.get("train")
  stats = (train.token_length if train else None) or {}
  try:
    return buckets.derive_boundaries(stats, int(manifest.max_seq_length),
                                     batch_size=int(config.train.global_batch_size),
                                     pool_batches=input_pipeline.POOL_BATCHES), "manifest"
  except ValueError as e:
    raise schema.DataError(f"config.train.bucket_boundaries=() derives them from the manifest, "
                           f"but {data_dir}'s {e}; or set them, e.g. "
                           "--config.train.bucket_boundaries=16,32,64,128") from None


# Memory of one record in tf.data's shuffle buffer beyond its serialized bytes (the tensor
# and string headers), and how much larger than its file a GZIP shard's records are.
_RECORD_OVERHEAD_BYTES = 160
_GZIP_RATIO = 4


def resolve_shuffle(config, previous_config, train_shards, train_rows, compression):
  """config.train.shuffle_buffer, with 0 resolved, and what it covers (a phrase).

  0: the buffer an earlier run of this model_dir recorded in its config.json (a resumed run
  keeps its order); else the whole train split when its records fit in
  train.shuffle_memory_mb, else as many records as fit. Shards are in a pseudo-random order
  (preprocess.rows.order_key), but a bounded buffer over shards written before that, or
  ordered some other way, would feed the input's order to training.
  """
  buffer = int(config.train.shuffle_buffer)
  if buffer:
    return buffer, f"{buffer} records (config.train.shuffle_buffer)"
  recorded = ((previous_config or {}).get("train") or {}).get("shuffle_buffer")
  if recorded:
    return int(recorded), f"{int(recorded)} records (the earlier run's config.json)"
  size = sum(tf.io.gfile.stat(path).length for path, _ in train_shards)
  per_record = size * (_GZIP_RATIO if compression else 1) / max(train_rows, 1)
  fits = int(config.train.shuffle_memory_mb * 2**20 / (per_record + _RECORD_OVERHEAD_BYTES))
  if fits >= train_rows:
    return max(train_rows, 1), f"the whole train split ({train_rows} records)"
  return max(fits, 1), (f"{fits} of the train split's {train_rows} records "
                        f"(config.train.shuffle_memory_mb={config.train.shuffle_memory_mb})")


def check_label_order(train_shards, manifest, covered):
  """A `warning:` line when the largest train shard looks ordered by label, else "".

  Shards written before rows were ordered by a hash of their id keep the input's order when
  the ids follow it (e.g. row numbers of a CSV sorted by label). covered: the shuffle
  buffer holds the whole split, so training itself still sees a random order.
  """
  if not train_shards or manifest.multi_label:
    return ""
  path, _ = max(train_shards, key=lambda item: item[1] or 0)
  found = input_pipeline.label_order(path, manifest.compression, len(manifest.labels))
  if found is None or found[2] <= 0.25:
    return ""
  first, last, distance = found
  effect = ("the shuffle covers the whole split, so training is not affected, but readers "
            "with small buffers are" if covered else
            "training reads that order through a shuffle buffer smaller than the split")
  return (f"warning: train shard {posixpath.basename(path)} looks ordered by label (label "
          f"shares of its first tenth {_shares(first)}, last tenth {_shares(last)}; distance "
          f"{distance:.2f}); {effect}: re-run preprocess.run, which orders rows by a hash of "
          "their id")


def _shares(values):
  return "/".join(f"{v:.2f}" for v in values)


def resolved_config(config, plan):
  """config with the plan's windows, padding, bucket boundaries and shuffle buffer: what the
  run's input pipelines read and its config.json records."""
  return with_boundaries(with_chunks(config, plan.geometry), plan.bucket_boundaries,
                         plan.padding, plan.shuffle_buffer)


def with_boundaries(config, boundaries, padding, shuffle_buffer=None):
  """A copy of config whose train.padding and train.bucket_boundaries (and shuffle_buffer, if
  given) are the resolved ones (what the input pipelines read and config.json records)."""
  config = config.copy_and_resolve_references()
  config.train.padding = padding
  config.train.bucket_boundaries = tuple(boundaries)
  if shuffle_buffer is not None:
    config.train.shuffle_buffer = int(shuffle_buffer)
  return config


def _label_names(config, manifest, labels, data_dir):
  head = config.model.head
  if not labels:
    raise schema.DataError(f"{data_dir} has no labels (the input had no label column): "
                           "it can be used for prediction, not training")
  if manifest.multi_label and head != "multilabel":
    raise schema.DataError("the data is multi-label; use --config.model.head=multilabel")
  if head == "multiclass" and config.train.class_weights and (
      len(config.train.class_weights) != len(labels)):
    raise ValueError(f"config.train.class_weights has {len(config.train.class_weights)} "
                     f"weights for {len(labels)} classes {list(labels)}")
  if head != "binary":
    return list(labels)
  pos = input_pipeline.label_index(list(labels), config.model.positive_label)
  rest = [x for i, x in enumerate(labels) if i != pos]
  return [rest[0] if len(rest) == 1 else f"not {labels[pos]}", labels[pos]]


def _check_batches_fit(config, strategy):
  replicas = strategy.num_replicas_in_sync
  for name, batch in (("train.global_batch_size", config.train.global_batch_size),
                      ("eval.global_batch_size", config.eval.global_batch_size)):
    if batch % replicas:
      raise ValueError(f"config.{name}={batch} is not divisible by the {replicas} replicas; "
                       f"use a multiple of {replicas} (each replica gets global / {replicas})")
  hosts = getattr(strategy.extended, "num_hosts", 1)
  if isinstance(strategy, tf.distribute.TPUStrategy) and hosts > 1 and (
      config.train.padding == "bucket"):
    # Each host buckets its own batches, but all TPU cores of a step run one program.
    raise ValueError(f"length bucketing cannot keep the {hosts} TPU hosts' batch shapes "
                     "equal; use --config.train.padding=fixed on a multi-host TPU")


def _read_shards(config, data_dir, manifest, splits=schema.SPLITS):
  """({split: [(path, rows)]}, [skipped {"file", "problem"}]), verified if configured."""
  shards, skipped = {}, []
  for split in splits:
    found = input_pipeline.split_shards(data_dir, split, manifest)
    if config.data.verify_shards:
      found, bad = input_pipeline.verify_shards(found, manifest.compression,
                                                config.data.on_corrupt_shard)
      skipped += [{"file": p, "problem": why} for p, why in bad]
    shards[split] = found
  return shards, skipped


def _unlabeled_shards(config, manifest):
  """([(path, rows)], rows, [skipped]) of all splits of config.distill.unlabeled_dir, checked
  against the labelled data's manifest; ([], 0, []) without one."""
  where = config.distill.unlabeled_dir.rstrip("/")
  if not where:
    return [], 0, []
  flag = f"--config.distill.unlabeled_dir={where}"
  if not config.distill.teacher:
    raise ValueError(f"{flag} is learned from a teacher's probabilities alone: set "
                     "--config.distill.teacher too")
  if config.model.head == "multilabel":
    raise ValueError(f"{flag}: a multilabel row may have no label, so unlabeled rows cannot be "
                     "told apart from it; distil a multilabel head on its labelled rows only")
  other = schema.read_manifest(where)
  if other.labels:
    raise schema.DataError(f"{flag} holds labelled data ({list(other.labels)}); unlabeled rows "
                           "come from preprocess.run --label_column= (empty)")
  for field in ("vocab_sha256", "lower_case", "max_seq_length", "chunking", "compression"):
    if getattr(other, field) != getattr(manifest, field):
      raise schema.DataError(f"{flag} has {field}={getattr(other, field)!r} but the training "
                             f"data {getattr(manifest, field)!r}; preprocess both with the same "
                             "vocabulary, --max_seq_length, chunking and compression")
  splits = [s for s in schema.SPLITS if other.splits.get(s) and other.splits[s].rows]
  shards, bad = _read_shards(config, where, other, splits)
  found = [shard for split in splits for shard in shards[split]]
  return found, sum(_rows(shards[s], other, s) for s in splits), bad


def _rows(shards, manifest, split):
  if all(r is not None for _, r in shards):
    return sum(r for _, r in shards)
  return int(manifest.splits[split].rows)


def check_model_dir_writable(model_dir):
  probe = posixpath.join(model_dir, f".write-test-{uuid.uuid4().hex[:8]}")
  try:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    message = getattr(e, "message", None) or str(e)
    raise ValueError(f"model_dir {model_dir} is not writable: "
                     f"{message.splitlines()[0]}") from None


def check_disk_space(model_dir, keep_checkpoints, num_params):
  """One clear error when the checkpoints, the best weights and the export cannot fit."""
  if "://" in model_dir:
    return
  free = shutil.disk_usage(model_dir).free
  # A checkpoint holds the weights and Adam's two slots, and keep_checkpoints + 1 of them
  # exist while a new one is written; best/ and export/ hold the weights, the export also
  # its graph (a few MB whatever the model size). What an earlier run of this model_dir
  # left there is replaced as the run goes on, so it counts as available.
  checkpoint = num_params * 4 * 3
  total = checkpoint * (keep_checkpoints + 1) + num_params * 4 * 2 + 16 * 2**20
  used = sum(os.path.getsize(os.path.join(root, name))
             for sub in (checkpointing.CHECKPOINT_DIR, checkpointing.BEST_DIR, EXPORT_DIR)
             for root, _, names in os.walk(os.path.join(model_dir, sub))
             for name in names)
  need = max(total - used, checkpoint)
  if free < need:
    raise ValueError(f"not enough disk space in {model_dir}: "
                     f"{keep_checkpoints} checkpoints (+1 while saving), "
                     f"the best weights and the export need about {need / 1e6:.1f} MB more, "
                     f"{free / 1e6:.1f} MB are free")


def _check_resume_compatible(config, previous, model_dir):
  """Refuses a config that changes a RESUME_FIXED field of previous (model_dir's config.json)
  when model_dir holds checkpoints."""
  if previous is None:
    return
  current = config_lib.to_dict(config)
  # Fields an earlier version's config.json lacks had their default value then.
  previous = _merged(config_lib.to_dict(config_lib.default_config()), previous)
  changed = []
  for key in RESUME_FIXED:
    a, b = previous, current
    for part in key.split("."):
      a, b = (a or {}).get(part), (b or {}).get(part)
    if _normalise(a) != _normalise(b):
      changed.append(key)
  if changed and tf.io.gfile.exists(posixpath.join(model_dir, checkpointing.CHECKPOINT_DIR)):
    raise ValueError(f"{model_dir} holds a run with a different "
                     f"{', '.join(changed)}; resuming it would mix two experiments. Use a "
                     "new --model_dir (or restore the old values)")


def _merged(defaults, values):
  """defaults updated by values, recursively (dicts)."""
  if not isinstance(defaults, dict) or not isinstance(values, dict):
    return values
  return {**defaults, **{k: _merged(defaults.get(k), v) for k, v in values.items()}}


def _normalise(value):
  if isinstance(value, (list, tuple)):
    return [_normalise(v) for v in value]
  if isinstance(value, dict):
    return {k: _normalise(v) for k, v in value.items()}
  return value


def data_error(plan, split, error):
  """The error to raise after a read error: a DataError naming the corrupt shard if one is."""
  found = input_pipeline.find_corrupt_shard(plan.shards[split], plan.compression)
  if found:
    return schema.DataError(f"shard {found[0]} is corrupt ({found[1]}); re-run preprocessing, "
                            "or set --config.data.on_corrupt_shard=skip")
  return error
