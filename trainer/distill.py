"""Distillation: a smaller student cut from a finished run (the teacher), trained on its logits.

A run with config.distill.teacher=<a finished run's model_dir> trains a student instead of a
fresh classifier; everything else (strategies, precision, checkpoints, resume, evaluation,
calibration, export, W&B) is the ordinary run's. The student is the teacher's encoder with only
config.distill.layers of its layers (as DistilBERT kept every other layer of BERT), and starts
from the teacher's weights: embeddings, those layers, pooler and head. Each training step runs the
frozen teacher first (training=False, no gradient) and the student learns

    (1 - w) * T^2 * KL(teacher probs at T || student probs at T) + w * label loss

with T = distill.temperature (T^2 keeps the gradient's scale as T changes, Hinton et al. 2015)
and w = distill.label_weight. binary: the KL of two Bernoullis; multiclass: of two softmaxes;
multilabel: the per-label Bernoulli KL averaged over labels (as the label loss is).

What is read from the teacher's model_dir: config.json (its encoder and model settings),
eval_results.json (it finished), export/assets/metadata.json (the labels, vocabulary and casing
it serves, checked against the student's data) and the weights its export holds: best/ if it
kept a best checkpoint, else its last checkpoint. Its variables are in no checkpoint of the
student and are never trained; a resumed student rebuilds the same teacher.
"""
import dataclasses
import hashlib
import posixpath
import re

import tensorflow as tf

from bertcore import cli, files, schema, wandb_mode
from serving import export_info
from trainer import checkpointing, encoders, eval_loop
from trainer import config as config_lib
from trainer import model as model_lib
from trainer.plan import EXPORT_DIR
from trainer.progress import say


@dataclasses.dataclass(frozen=True)
class TeacherRun:
  """What a teacher's model_dir holds (read_teacher)."""
  model_dir: str
  config: object            # a default_config() with the teacher's encoder and model groups
  config_sha256: str        # of its config.json's bytes
  metadata: dict            # its export's assets/metadata.json
  checkpoint: str           # the weights its export holds
  depth: int                # its encoder's layers


@dataclasses.dataclass
class Teacher:
  """The built, frozen teacher of a run."""
  run: TeacherRun
  classifier: object        # tf_keras.Model, the teacher's weights, trainable=False
  encoder: object


def read_teacher(model_dir):
  """The TeacherRun of a finished run's model_dir; ValueError (one line) if it is not one."""
  model_dir = model_dir.rstrip("/")
  where = f"config.distill.teacher={model_dir}"
  path = posixpath.join(model_dir, config_lib.CONFIG_FILE)
  if not tf.io.gfile.isdir(model_dir):
    raise ValueError(f"{where} does not exist")
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{where}: no {config_lib.CONFIG_FILE} there; the teacher is the "
                     "--model_dir of a finished `python -m trainer.task` run")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  recorded = files.read_json(path)
  grand_teacher = (recorded.get("distill") or {}).get("teacher")
  if grand_teacher:
    raise ValueError(f"{where} is itself a student (of {grand_teacher}); distil from "
                     f"{grand_teacher}, keeping fewer layers with config.distill.layers")
  config = _teacher_config(recorded, where)
  if "final" not in eval_loop.read_results(model_dir):
    raise ValueError(f"{where} has not finished training (no final evaluation in "
                     f"{eval_loop.RESULTS_FILE}); finish it first (re-run its command)")
  try:
    metadata = export_info.read_metadata(posixpath.join(model_dir, EXPORT_DIR))
  except (ValueError, OSError, tf.errors.OpError):
    raise ValueError(f"{where} has no export ({EXPORT_DIR}/assets/"
                     f"{export_info.METADATA_ASSET}), which names the labels and vocabulary "
                     "it was trained on; distil from a run trained with config.export=True"
                     ) from None
  checkpoint = checkpointing.final_checkpoint(model_dir)
  if not checkpoint:
    raise ValueError(f"{where} holds no checkpoint ({checkpointing.BEST_DIR}/ or "
                     f"{checkpointing.CHECKPOINT_DIR}/)")
  return TeacherRun(model_dir, config, hashlib.sha256(raw).hexdigest(), metadata, checkpoint,
                    _depth(config.encoder, where))


def _teacher_config(recorded, where):
  """default_config() with the encoder and model groups a teacher's config.json recorded
  (what build_classifier reads); a field this trainer does not know is refused."""
  config = config_lib.default_config()
  for group in ("encoder", "model"):
    for name, value in (recorded.get(group) or {}).items():
      if name not in config[group]:
        raise ValueError(f"{where}: its config.json has {group}.{name}, which this trainer "
                         "does not know; distil with the version that trained the teacher")
      config[group][name] = tuple(value) if isinstance(value, list) else value
  return config


def _depth(encoder_config, where):
  if encoder_config.kind == "random":
    return int(encoder_config.num_layers)
  if encoder_config.kind == "checkpoint":
    try:
      return int(encoders.read_bert_config(encoder_config.dir)["num_hidden_layers"])
    except (OSError, tf.errors.OpError, ValueError, KeyError) as e:
      raise ValueError(f"{where}: cannot read its encoder {encoder_config.dir}: "
                       f"{cli.error_line(e)}") from None
  raise ValueError(f"{where}: its encoder is a TF-Hub layer, whose layers cannot be selected; "
                   "distil from a run with encoder.kind=checkpoint (python -m trainer.convert)")


def default_layers(depth):
  """Every other layer counted from the top: (1, 3, 5) of 6, (0, 2, 4) of 5, (1,) of 2."""
  return tuple(range(depth - 1, -1, -2))[::-1]


def resolve_layers(layers, depth):
  """config.distill.layers checked against the teacher's depth; () -> default_layers."""
  layers = tuple(int(i) for i in layers) or default_layers(depth)
  bad = [i for i in layers if not 0 <= i < depth]
  if bad:
    raise ValueError(f"config.distill.layers={layers}: the teacher's encoder has {depth} layers "
                     f"(0 to {depth - 1}); {bad} is outside them")
  if list(layers) != sorted(set(layers)):
    raise ValueError(f"config.distill.layers={layers} must be increasing, each layer once")
  return layers


def resolve_config(config, model_dir):
  """The run's config with its teacher resolved: config.encoder = the teacher's (except a
  dropout the run sets), distill.layers explicit, distill.teacher_config_sha256 recorded.

  A config without a teacher comes back as it is, unless model_dir holds a student's
  checkpoints (resuming them as a plain run would restore 3 layers into 6).
  Raises ValueError (one line) before anything is built.
  """
  previous = config_lib.read_config_json(model_dir.rstrip("/")) or {}
  recorded = previous.get("distill") or {}
  resumable = tf.io.gfile.exists(posixpath.join(model_dir, checkpointing.CHECKPOINT_DIR))
  if not config.distill.teacher:
    if recorded.get("teacher") and resumable:
      raise ValueError(f"{model_dir} holds a student of {recorded['teacher']}; resume it with "
                       f"--config.distill.teacher={recorded['teacher']} or use a new --model_dir")
    return config
  d = config.distill
  if d.temperature <= 0:
    raise ValueError(f"config.distill.temperature must be positive, got {d.temperature}")
  if not 0.0 <= d.label_weight <= 1.0:
    raise ValueError(f"config.distill.label_weight must be in [0, 1], got {d.label_weight}")
  teacher = read_teacher(d.teacher)
  if teacher.config.model.head != config.model.head:
    raise ValueError(f"the teacher {teacher.model_dir} has a {teacher.config.model.head} head "
                     f"and the student a {config.model.head} one; use "
                     f"--config.model.head={teacher.config.model.head}")
  if d.teacher_config_sha256 and d.teacher_config_sha256 != teacher.config_sha256:
    raise ValueError(f"the teacher's config.json changed: sha256 {teacher.config_sha256[:12]}, "
                     f"config.distill.teacher_config_sha256 {d.teacher_config_sha256[:12]}")
  config = config.copy_and_resolve_references()
  dropout = config.encoder.dropout
  for name, value in teacher.config.encoder.items():
    config.encoder[name] = value
  if dropout is not None:
    config.encoder.dropout = dropout
  config.distill.teacher = teacher.model_dir
  config.distill.layers = resolve_layers(d.layers, teacher.depth)
  config.distill.teacher_config_sha256 = teacher.config_sha256
  changed = [k for k in ("teacher", "layers", "teacher_config_sha256")
             if recorded and _plain(recorded.get(k)) != _plain(config.distill[k])]
  if changed and resumable:
    raise ValueError(f"{model_dir} holds a student with a different distill."
                     f"{', distill.'.join(changed)}; resuming it would mix two experiments. Use "
                     "a new --model_dir")
  return config


def _plain(value):
  return list(value) if isinstance(value, (list, tuple)) else value


def check_fits(config, plan):
  """Refuses a teacher whose labels, vocabulary or casing differ from the student's data."""
  if not config.distill.teacher:
    return
  teacher = read_teacher(config.distill.teacher)
  meta, manifest = teacher.metadata, plan.manifest
  if list(meta.get("labels") or []) != list(plan.label_names):
    raise schema.DataError(
        f"the teacher {teacher.model_dir} predicts labels {meta.get('labels')} but the "
        f"student's data gives {list(plan.label_names)}; distil on data with the teacher's "
        "labels (and model.positive_label)")
  if meta.get("vocab_sha256") != manifest.vocab_sha256:
    raise schema.DataError(
        f"vocabulary mismatch: the teacher {teacher.model_dir} was trained on vocab sha256 "
        f"{str(meta.get('vocab_sha256'))[:12]}, the data has {manifest.vocab_sha256[:12]}; "
        "preprocess with the teacher's vocabulary")
  if manifest.lower_case is not None and bool(meta.get("lower_case")) != bool(
      manifest.lower_case):
    raise schema.DataError(
        f"lower-casing mismatch: the teacher {teacher.model_dir} serves "
        f"lower_case={meta.get('lower_case')}, the data was tokenized with "
        f"lower_case={manifest.lower_case}")


def build_teacher(config, manifest, strategy):
  """The frozen teacher with its final weights, built under strategy.scope() after the
  precision policy is set (it runs in the student's precision); None without a teacher."""
  if not config.distill.teacher:
    return None
  run = read_teacher(config.distill.teacher)
  with strategy.scope():
    classifier, encoder = model_lib.build_classifier(run.config, manifest)
  try:
    checkpointing.read_weights(classifier, run.checkpoint)
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise ValueError(f"cannot restore the teacher's weights from {run.checkpoint} into the "
                     f"model its config.json describes: {cli.error_line(e)}") from None
  classifier.trainable = False
  d = config.distill
  say(f"distill: the student keeps layers {tuple(d.layers)} of the teacher's {run.depth} "
      f"({run.checkpoint}), with its embeddings, pooler and head; loss {1 - d.label_weight:g} x "
      f"T^2 x KL(teacher || student) at T={d.temperature:g} + {d.label_weight:g} x label loss; "
      "the teacher's logits are computed in every training step")
  return Teacher(run, classifier, encoder)


def build_student(config, manifest, teacher):
  """(classifier, encoder): build_classifier with the teacher's encoder cut to
  config.distill.layers, its weights copied from the teacher's. Build under strategy.scope()."""
  classifier, encoder = model_lib.build_classifier(config, manifest,
                                                   encoder=student_encoder(config, manifest))
  copy_teacher_weights(classifier, encoder, teacher.classifier, teacher.encoder,
                       config.distill.layers)
  return classifier, encoder


def student_encoder(config, manifest):
  """The student's encoder, not yet called: the teacher's with len(config.distill.layers)
  layers (config.encoder is the teacher's: resolve_config); weights not yet copied."""
  bert_config = (encoders.read_bert_config(config.encoder.dir)
                 if config.encoder.kind == "checkpoint" else
                 model_lib.random_bert_config(config.encoder, int(manifest.vocab_size or 30522)))
  bert_config = dict(bert_config, num_hidden_layers=len(config.distill.layers))
  return encoders.build_bert_encoder(bert_config, dropout=config.encoder.dropout)


def _outside(model, inner):
  """model's weights that are not inner's (in order)."""
  inside = {id(w) for w in inner}
  return [w for w in model.weights if id(w) not in inside]


def copy_teacher_weights(student, student_encoder, teacher, teacher_encoder, layers):
  """Assigns the teacher's embeddings, pooler, head and layers[j] (to the student's layer j).

  The pairs are taken by structure (the same code built both models) and checked by name and
  shape, so a student whose head or encoder differ from the teacher's is refused.
  """
  pairs = list(zip(_outside(student_encoder, [w for b in student_encoder.transformer_layers
                                              for w in b.weights]),
                   _outside(teacher_encoder, [w for b in teacher_encoder.transformer_layers
                                              for w in b.weights])))
  for j, i in enumerate(layers):
    pairs += zip(student_encoder.transformer_layers[j].weights,
                 teacher_encoder.transformer_layers[i].weights)
  pairs += zip(_outside(student, student_encoder.weights),
               _outside(teacher, teacher_encoder.weights))
  expected = len(student.weights)
  if len(pairs) != expected or any(
      _role(s.name) != _role(t.name) or s.shape != t.shape for s, t in pairs):
    wrong = next(((s.name, t.name) for s, t in pairs
                  if _role(s.name) != _role(t.name) or s.shape != t.shape), None)
    raise ValueError("the student cannot start from the teacher's weights: its model differs "
                     f"({wrong or f'{len(pairs)} of {expected} weights matched'}); use the "
                     "teacher's model settings (its config.json's model group)")
  for s, t in pairs:
    s.assign(t)


def write_encoder_layers(encoder_dir, layers, output_dir):
  """An encoder directory (trainer/convert.py's layout) of encoder_dir's embeddings, pooler and
  `layers`: the student's selection from the pretrained encoder, for a plain run of the student's
  shape without a teacher (benchmarks/bench_distill.py's control). Returns bert_config."""
  bert_config = encoders.read_bert_config(encoder_dir)
  layers = resolve_layers(layers, int(bert_config["num_hidden_layers"]))
  full = encoders.build_bert_encoder(bert_config)
  encoders.load_encoder_weights(full, encoder_dir)
  bert_config = dict(bert_config, num_hidden_layers=len(layers))
  cut = encoders.build_bert_encoder(bert_config)
  ids = tf.zeros([1, 2], tf.int32)   # one call creates the variables
  cut(dict(input_word_ids=ids, input_mask=ids + 1, input_type_ids=ids))
  copy_teacher_weights(cut, cut, full, full, layers)   # the encoders alone: no head to copy
  tf.io.gfile.makedirs(output_dir)
  tf.train.Checkpoint(encoder=cut).write(posixpath.join(output_dir, encoders.CHECKPOINT_PREFIX))
  tf.io.gfile.copy(posixpath.join(encoder_dir, encoders.VOCAB_FILE),
                   posixpath.join(output_dir, encoders.VOCAB_FILE), overwrite=True)
  files.write_json(posixpath.join(output_dir, encoders.CONFIG_FILE), bert_config)  # last
  return bert_config


def _role(name):
  """A weight's name without its model's prefix and layer number: what it is in its layer."""
  name = re.sub(r"^bert_encoder_v2(_\d+)?/", "", name.split(":")[0])
  return re.sub(r"layer_\d+/", "layer/", name)


def distillation_kl(teacher_logits, student_logits, head, temperature):
  """float32 [b]: KL(teacher || student) of their probabilities at temperature T.

  binary / multilabel: logits [b, K] of K independent sigmoids, the Bernoulli KLs averaged
  over K; multiclass: logits [b, C], the KL of the softmaxes. Computed as cross-entropy minus
  the teacher's entropy, each in TensorFlow's stable form.
  """
  t = tf.cast(teacher_logits, tf.float32) / temperature
  s = tf.cast(student_logits, tf.float32) / temperature
  if head == "multiclass":
    p = tf.nn.softmax(t, axis=-1)
    return (tf.nn.softmax_cross_entropy_with_logits(labels=p, logits=s)
            - tf.nn.softmax_cross_entropy_with_logits(labels=p, logits=t))
  p = tf.sigmoid(t)
  kl = (tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=s)
        - tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=t))
  return tf.reduce_mean(kl, axis=-1)


def make_loss(config):
  """The train step's loss_fn(labels, logits, teacher_logits) -> float32 [b] (steps.py)."""
  head, train_config = config.model.head, config.train
  temperature, w = float(config.distill.temperature), float(config.distill.label_weight)
  class_weights = list(train_config.class_weights) or None
  unlabeled = bool(config.distill.unlabeled_dir)   # rows whose labels are -1 (input_pipeline)

  def label_loss(labels, logits):
    if not unlabeled:
      return model_lib.per_example_loss(labels, logits, head, train_config.pos_weight,
                                        class_weights)
    labelled = tf.cast((labels if head == "multiclass" else labels[:, 0]) >= 0, tf.float32)
    # (not multilabel: trainer.plan refuses unlabeled rows for it)
    return labelled * model_lib.per_example_loss(tf.maximum(labels, 0), logits, head,
                                                 train_config.pos_weight, class_weights)

  def loss_fn(labels, logits, teacher_logits):
    loss = 0.0
    if w < 1:
      kl = distillation_kl(teacher_logits, logits, head, temperature)
      loss += (1 - w) * temperature ** 2 * kl
    if w > 0:
      loss += w * label_loss(labels, logits)
    return loss
  return loss_fn


def lineage(config):
  """{"teacher": {...}} for the export's metadata.json and W&B; {} without a teacher."""
  d = config.distill
  if not d.teacher:
    return {}
  run = read_teacher(d.teacher)
  data_dir = (run.metadata.get("training") or {}).get("data_dir")
  try:  # the name the teacher's own save run gave its export (trainer/export_step.py)
    artifact = wandb_mode.model_artifact(schema.read_manifest(data_dir))
  except (schema.DataError, ValueError, OSError, tf.errors.OpError, TypeError):
    artifact = f"teacher-{run.config_sha256[:12]}"   # its data is gone: a name of its own
  return {"teacher": {
      "model_dir": run.model_dir, "export_dir": posixpath.join(run.model_dir, EXPORT_DIR),
      "config_sha256": run.config_sha256, "checkpoint": run.checkpoint, "data_dir": data_dir,
      "artifact": artifact, "layers": list(d.layers), "of_layers": run.depth,
      "temperature": d.temperature, "label_weight": d.label_weight,
      "unlabeled_dir": d.unlabeled_dir or None}}
