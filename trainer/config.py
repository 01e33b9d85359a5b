"""The one config layer: defaults, validation and the resolved-config file.

Each experiment is a `configs/<name>.py` whose `get_config()` starts from `default_config()`
and changes what differs; `python -m trainer.task --config=configs/<name>.py` loads it with
ml_collections' config_flags, so every field below can be overridden on the command line,
e.g. `--config.train.learning_rate=1e-4 --config.model.head=multiclass`.
"""
import importlib.util
import json
import posixpath

import ml_collections
import tensorflow as tf
from ml_collections import config_dict
from ml_collections.config_flags import config_path

from bertcore import files
from trainer import objective
from bertcore.names import HEADS, POOLINGS, PRECISIONS, CONFIG_FILE  # noqa: F401 (re-exported)
from bertcore.names import EXPORT_PRECISIONS

ENCODER_KINDS = ("hub", "checkpoint", "random")
NAN_POLICIES = ("stop", "skip")
PADDINGS = ("auto", "longest", "bucket", "fixed")
LR_SCHEDULES = ("linear", "polynomial_from_zero")
CALIBRATIONS = ("temperature", "none")   # trainer/calibration.py METHODS
CHUNK_POOLINGS = ("", "mean", "max", "attention")


def default_config():
  """Every field the trainer reads, with the default used when a config file does not set it."""
  c = ml_collections.ConfigDict()

  c.encoder = ml_collections.ConfigDict()
  c.encoder.kind = "random"            # hub | checkpoint | random
  c.encoder.hub_handle = ""            # kind=hub: TF-Hub handle or local SavedModel directory
  c.encoder.dir = ""                   # kind=checkpoint: bert_config.json + vocab.txt + bert_model.ckpt
  c.encoder.vocab_file = ""            # kind=random: optional vocab.txt the data must match
  # kind=random: the size of a freshly initialised BertEncoderV2 (vocab_size comes from the data).
  c.encoder.hidden_size = 32
  c.encoder.num_layers = 2
  c.encoder.num_heads = 2
  c.encoder.intermediate_size = 64
  c.encoder.max_position_embeddings = 512
  c.encoder.hidden_act = "gelu"
  # Dropout inside the encoder; unset = the bert_config's own (kind=checkpoint/random: 0.1).
  c.encoder.dropout = config_dict.placeholder(float)

  c.model = ml_collections.ConfigDict()
  c.model.head = "binary"              # binary (sigmoid) | multiclass (softmax) | multilabel
  c.model.pooling = "cls"              # cls (pooled_output) | mean (masked mean of sequence_output)
  c.model.dropout = 0.1                # before the output Dense layer
  c.model.positive_label = ""          # binary: class name that is positive ("" = labels[1])
  # Documents longer than the window (data preprocessed with --max_chunks; docs/training.md):
  # each is read in windows (bertcore/windows.py) whose encodings are pooled into one
  # prediction: mean | max of the windows' logits, or attention (a learned weighting of the
  # windows' pooled vectors). "" = records are single windows (truncated data).
  c.model.chunk_pooling = ""
  c.model.chunk_length = 0             # ids per window; 0 = the data's (manifest max_seq_length)
  c.model.chunk_overlap = -1           # pieces shared by consecutive windows; -1 = the data's
  c.model.max_chunks = 0               # windows per document at most; 0 = enough for the data's cap

  c.train = ml_collections.ConfigDict()
  # The global batch: each of R replicas gets global_batch_size / R examples per step.
  c.train.global_batch_size = 32
  c.train.epochs = 3
  c.train.steps_per_epoch = 0          # 0 = train rows // global_batch_size
  c.train.learning_rate = 2e-5
  c.train.end_learning_rate = 0.0
  c.train.warmup_fraction = 0.1
  # linear: warm up to the peak, then decay linearly to end_learning_rate (PyTorch / Hugging
  # Face); polynomial_from_zero: Model Garden's, whose decay starts at step 0.
  c.train.lr_schedule = "linear"
  c.train.adam_epsilon = 1e-8
  # Update only the word-embedding rows a batch uses (one replica; faster on CPU, see
  # trainer/optimization.py). False = Keras' dense Adam update of the whole table.
  c.train.lazy_embeddings = True
  c.train.weight_decay = 0.01
  # Layer-wise learning-rate decay: encoder layer l of L learns at lr x decay^(L - l), the
  # embeddings at lr x decay^L, the head at lr (trainer/optimization.py); 1.0 = off.
  c.train.layer_decay = 1.0
  c.train.clip_norm = 1.0              # clip by global norm after the cross-replica sum; 0 = off
  c.train.pos_weight = 1.0             # binary / multilabel: weight of positive targets in the loss
  c.train.class_weights = ()           # multiclass: one weight per class; () = all 1
  # How batches are padded (rows are sorted by length in pools of batches first):
  #   longest  each batch to its longest row (any length: for steps not compiled per shape)
  #   bucket   to the smallest of a few fixed lengths that fits (train.bucket_boundaries)
  #   fixed    everything to max_seq_length
  #   auto     bucket when the step is compiled per shape (TPU, xla; fixed on a multi-host
  #            TPU) or bucket_boundaries are set, else longest; a resumed run keeps its own
  #            (trainer/plan.py resolve_padding; config.json records the resolved one).
  c.train.padding = "auto"
  # Padded lengths of padding=bucket (max_seq_length is added); () = derived from the
  # manifest's token lengths (trainer/buckets.py), once per model_dir: config.json records them.
  c.train.bucket_boundaries = ()
  # Records in the training shuffle buffer. 0 = the whole train split while its records fit
  # in train.shuffle_memory_mb (as many as fit beyond that): a stream read in any order has
  # the split's label mix from its first batch. Resolved once per model_dir (trainer/plan.py
  # resolve_shuffle; config.json records the number, a resumed run keeps it).
  c.train.shuffle_buffer = 0
  c.train.shuffle_memory_mb = 512.0
  c.train.seed = 42
  c.train.steps_per_execution = 1      # steps run inside one tf.function call (TPU: 50-100)
  c.train.checkpoint_every_steps = 500  # 0 = only at epoch ends
  c.train.keep_checkpoints = 3
  c.train.log_every_steps = 50
  c.train.nan_policy = "stop"          # stop | skip (the update of a non-finite step is dropped)
  c.train.stop_at_step = 0             # >0: checkpoint and stop there, as if preempted (smoke runs)

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 64
  c.eval.best_metric = "auto"          # auto = best_f1 (binary), macro_f1 (multiclass), f1 (multilabel)
  c.eval.test_split = True             # evaluate the labelled test split at the end
  # temperature: divide the logits by one T fitted on validation (minimum NLL) before the
  # threshold sweep and in the export, so that probabilities mean what they say
  # (trainer/calibration.py); none: the raw sigmoid / softmax.
  c.eval.calibration = "temperature"

  c.data = ml_collections.ConfigDict()
  c.data.verify_shards = True          # count records per shard against the manifest first
  c.data.on_corrupt_shard = "error"    # error | skip (skipped shards are counted and reported)
  c.data.cycle_length = 8              # shards read in parallel per input pipeline

  c.precision = "auto"                 # auto | float32 | mixed_float16 | mixed_bfloat16
  c.xla = False                        # jit-compile the forward/backward pass
  c.export = True                      # write model_dir/export (SavedModel taking raw strings)
  # What the export computes in: float32 (any machine), or bfloat16 (faster where the CPU has it
  # natively, AVX512_BF16 / AMX; emulated, slower, elsewhere; probabilities move slightly).
  c.export_precision = "float32"
  # Multi-worker: the longest one collective call (a training call of steps_per_execution
  # steps, an evaluation call, a preemption check) may last before this worker stops with an
  # error: it must exceed that call's own computing plus the chief's longest lone work between
  # calls (a checkpoint or W&B write). 0 = no bound.
  c.collective_timeout_seconds = 600.0

  c.wandb = ml_collections.ConfigDict()
  c.wandb.mode = "auto"                # auto | online | offline | disabled
  c.wandb.project = "bert-text-classification"
  c.wandb.entity = ""
  c.wandb.group = ""                   # "" = the model_dir's base name
  c.wandb.tags = ()

  # Distillation (trainer/distill.py, docs/distillation.md): train a smaller student from a
  # finished run (the teacher). The student is the teacher's encoder (config.encoder is replaced
  # by the teacher's) with only distill.layers of its layers, plus its pooler and head; its loss
  # is (1 - label_weight) * temperature^2 * KL(teacher || student, both softened by temperature)
  # + label_weight * the label loss.
  c.distill = ml_collections.ConfigDict()
  c.distill.teacher = ""               # the teacher's model_dir; "" = no distillation
  # The teacher's encoder layers the student keeps (0 = the lowest), in order; () = every other
  # layer counted from the top: (1, 3, 5) of 6. config.json records the resolved tuple.
  c.distill.layers = ()
  c.distill.temperature = 2.0
  c.distill.label_weight = 0.5         # 0 = the teacher's probabilities only, 1 = the labels only
  # A data dir of unlabeled rows (preprocess.run --label_column=, the same vocabulary and
  # max_seq_length): all its splits join the training split, learned from the teacher alone.
  c.distill.unlabeled_dir = ""
  # sha256 of the teacher's config.json, recorded by the trainer; a value given here must match.
  c.distill.teacher_config_sha256 = ""
  return c


def validate(config):
  """Raises ValueError naming the first field with an impossible value."""
  def one_of(name, value, allowed):
    if value not in allowed:
      raise ValueError(f"config.{name}={value!r} is not one of {', '.join(allowed)}")
  one_of("encoder.kind", config.encoder.kind, ENCODER_KINDS)
  one_of("model.head", config.model.head, HEADS)
  one_of("model.pooling", config.model.pooling, POOLINGS)
  one_of("precision", config.precision, PRECISIONS)
  one_of("export_precision", config.export_precision, EXPORT_PRECISIONS)
  one_of("train.nan_policy", config.train.nan_policy, NAN_POLICIES)
  one_of("train.padding", config.train.padding, PADDINGS)
  one_of("train.lr_schedule", config.train.lr_schedule, LR_SCHEDULES)
  one_of("data.on_corrupt_shard", config.data.on_corrupt_shard, ("error", "skip"))
  one_of("eval.calibration", config.eval.calibration, CALIBRATIONS)
  one_of("model.chunk_pooling", config.model.chunk_pooling, CHUNK_POOLINGS)
  if config.eval.best_metric in objective.MINIMIZED:
    # The best checkpoint is the one with the highest value (checkpointing.BestTracker).
    raise ValueError(f"config.eval.best_metric={config.eval.best_metric!r} is lower-is-better; "
                     "the best checkpoint is picked by a higher-is-better metric (e.g. best_f1, "
                     f"pr_auc); --objective={config.eval.best_metric} searches on it instead")
  if config.encoder.kind == "hub" and not config.encoder.hub_handle:
    raise ValueError("config.encoder.kind=hub needs config.encoder.hub_handle")
  if config.encoder.kind == "checkpoint" and not config.encoder.dir:
    raise ValueError("config.encoder.kind=checkpoint needs config.encoder.dir")
  positive = {"train.global_batch_size": config.train.global_batch_size,
              "train.epochs": config.train.epochs,
              "train.steps_per_execution": config.train.steps_per_execution,
              "train.log_every_steps": config.train.log_every_steps,
              "train.keep_checkpoints": config.train.keep_checkpoints,
              "eval.global_batch_size": config.eval.global_batch_size}
  for name, value in positive.items():
    if value < 1:
      raise ValueError(f"config.{name} must be at least 1, got {value}")
  if config.collective_timeout_seconds < 0:
    raise ValueError(f"config.collective_timeout_seconds must be >= 0 (0 = no bound), got "
                     f"{config.collective_timeout_seconds}")
  if not 0.0 <= config.model.dropout < 1.0:
    raise ValueError(f"config.model.dropout must be in [0, 1), got {config.model.dropout}")
  if not 0.0 <= config.train.warmup_fraction < 1.0:
    raise ValueError(f"config.train.warmup_fraction must be in [0, 1), got "
                     f"{config.train.warmup_fraction}")
  if config.train.learning_rate <= 0:
    raise ValueError(f"config.train.learning_rate must be positive, got "
                     f"{config.train.learning_rate}")
  if not 0.0 < config.train.layer_decay <= 1.0:
    raise ValueError(f"config.train.layer_decay must be in (0, 1] (1 = off), got "
                     f"{config.train.layer_decay}")
  if config.train.pos_weight <= 0:
    raise ValueError(f"config.train.pos_weight must be positive, got {config.train.pos_weight}")
  if config.train.shuffle_buffer < 0 or config.train.shuffle_memory_mb <= 0:
    raise ValueError("config.train.shuffle_buffer must be >= 0 (0 = the whole split) and "
                     "config.train.shuffle_memory_mb positive, got "
                     f"{config.train.shuffle_buffer} and {config.train.shuffle_memory_mb}")
  if any(b < 2 for b in config.train.bucket_boundaries):
    raise ValueError(f"config.train.bucket_boundaries must be lengths >= 2, got "
                     f"{tuple(config.train.bucket_boundaries)}")


def to_dict(config):
  """A JSON-able plain dict of the config (placeholders that are unset become None)."""
  return json.loads(config.to_json_best_effort())


def write_config(config, model_dir):
  """Writes the resolved config to model_dir/config.json (atomically)."""
  path = posixpath.join(model_dir, CONFIG_FILE)
  files.write_json(path, to_dict(config))
  return path


def read_config_json(model_dir):
  """The config.json a previous run wrote into model_dir, or None."""
  path = posixpath.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return None
  return files.read_json(path)



def load_config_file(path, overrides=None):
  """Loads `get_config()` from a config file (what config_flags does), for tests and tools.

  Args:
    path: a configs/<name>.py file.
    overrides: optional dict of dotted field names to values, e.g. {"train.epochs": 1}.
  """
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for name, value in (overrides or {}).items():
    config_path.set_value(name, config, value)  # what --config.<name>=<value> does
  return config
