"""trainer/distill.py: a student cut from a finished run, trained on its teacher's logits.

One tiny teacher (a random 4-layer encoder, trained for one short epoch by train_and_evaluate)
and one student of it (layers 1 and 3, label_weight 0) per module; the student's tests read
what that run left (checkpoints, config.json, export). The resume-to-the-same-weights run
is slow; a fast case checks that a resumed student restores its own checkpoint.
"""
import hashlib
import json
import os

import trainer_fixtures as fx  # noqa: F401  (imports bertcore before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

import helpers
from bertcore import schema, tokenization
from serving import export_info
from trainer import checkpointing, distill, train
from trainer import strategy as strategy_lib

STUDENT_EPOCHS, STEPS_PER_EPOCH = 2, 12       # of batches of 16 from 128 train rows
TOTAL = STUDENT_EPOCHS * STEPS_PER_EPOCH


def one_device():
  return strategy_lib.build_strategy("one_device")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(d, n_train=128, n_val=32, n_test=16)
  fx.write_vocab(d)
  return d


pytestmark = pytest.mark.usefixtures("float32_policy")   # conftest.py


@pytest.fixture(scope="module")
def teacher_dir(data_dir, tmp_path_factory):
  """A finished 4-layer run (with its export, which names its labels and vocabulary)."""
  model_dir = str(tmp_path_factory.mktemp("teacher") / "run")
  train.train_and_evaluate(
      fx.tiny_config(data_dir, **{"encoder.num_layers": 4, "train.epochs": 1,
                                  "train.steps_per_epoch": 48, "eval.test_split": False}),
      data_dir, model_dir, one_device())
  return model_dir


def student_config(data_dir, teacher_dir, **overrides):
  return fx.tiny_config(data_dir, **{
      "distill.teacher": teacher_dir, "distill.label_weight": 0.0,
      "train.epochs": STUDENT_EPOCHS, "train.steps_per_epoch": STEPS_PER_EPOCH,
      "eval.test_split": False, "eval.calibration": "none",
      **overrides})


@pytest.fixture(scope="module")
def student_dir(data_dir, teacher_dir, tmp_path_factory):
  """A finished student of teacher_dir (label_weight 0: the teacher's probabilities only)."""
  model_dir = str(tmp_path_factory.mktemp("student") / "run")
  train.train_and_evaluate(student_config(data_dir, teacher_dir), data_dir, model_dir,
                           one_device())
  return model_dir


def unlabeled_rows(n, seed):
  """example_rows without their labels (what preprocess.run --label_column= writes)."""
  return [(f"u{seed}-{i}", ids, types, []) for i, (_, ids, types, _)
          in enumerate(fx.example_rows(n, seed=seed))]


@pytest.fixture(scope="module")
def unlabeled_dir(tmp_path_factory):
  """48 + 8 + 8 rows without labels, the same vocabulary and max_seq_length as data_dir."""
  d = str(tmp_path_factory.mktemp("unlabeled"))
  fx.write_data_dir(d, {"train": unlabeled_rows(48, 7), "validation": unlabeled_rows(8, 8),
                        "test": unlabeled_rows(8, 9)}, labels=())
  return d


def build_pair(data_dir, teacher_dir, **overrides):
  """(resolved config, teacher, student classifier, student encoder) built as a run builds
  them, the student fresh from the teacher."""
  config = distill.resolve_config(student_config(data_dir, teacher_dir, **overrides),
                                  data_dir + "/unused")
  manifest = schema.read_manifest(data_dir)
  strategy = one_device()
  teacher = distill.build_teacher(config, manifest, strategy)
  with strategy.scope():
    student, encoder = distill.build_student(config, manifest, teacher)
  return config, teacher, student, encoder


def validation_features():
  """The validation split's rows (example_rows seed 2, as tiny_data_dir wrote them), padded."""
  rows = fx.example_rows(32, seed=2)
  width = max(len(ids) for _, ids, _, _ in rows)
  ids = np.zeros([len(rows), width], np.int32)
  for i, (_, row, _, _) in enumerate(rows):
    ids[i, :len(row)] = row
  return {"input_word_ids": ids, "input_mask": (ids > 0).astype(np.int32),
          "input_type_ids": np.zeros_like(ids)}


def mean_kl(teacher, student, temperature):
  features = validation_features()
  return float(tf.reduce_mean(distill.distillation_kl(
      teacher(features, training=False), student(features, training=False), "binary",
      temperature)))


def restore(classifier, directory):
  prefix = tf.train.latest_checkpoint(directory)
  tf.train.Checkpoint(model=classifier).read(prefix).assert_existing_objects_matched(
      ).expect_partial()
  return prefix


def read_checkpoint(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


# ------------------------------------------------------------------------------------ the loss
@pytest.mark.parametrize("head", ["binary", "multiclass", "multilabel"])
def test_the_kl_is_the_textbook_one_and_the_loss_weighs_it(head):
  rng = np.random.default_rng(0)
  k = 1 if head == "binary" else 3
  t, s = rng.normal(0, 2, (5, k)), rng.normal(0, 2, (5, k))
  temperature = 2.5
  got = distill.distillation_kl(t, s, head, temperature).numpy()
  if head == "multiclass":
    p = np.exp(t / temperature) / np.exp(t / temperature).sum(1, keepdims=True)
    q = np.exp(s / temperature) / np.exp(s / temperature).sum(1, keepdims=True)
    want = (p * np.log(p / q)).sum(1)
  else:
    p, q = 1 / (1 + np.exp(-t / temperature)), 1 / (1 + np.exp(-s / temperature))
    want = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).mean(1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert np.all(want > 0)
  np.testing.assert_allclose(distill.distillation_kl(t, t, head, temperature), 0, atol=1e-6)

  labels = (np.array([0, 1, 2, 1, 0], np.int32) if head == "multiclass" else
            (rng.random((5, k)) > 0.5).astype(np.float32))
  config = fx.tiny_config("/unused", **{"model.head": head, "distill.temperature": temperature,
                                        "distill.label_weight": 0.25})
  from trainer import model as model_lib
  label_loss = model_lib.per_example_loss(labels, s.astype(np.float32), head).numpy()
  np.testing.assert_allclose(distill.make_loss(config)(labels, s, t),
                             0.75 * temperature ** 2 * want + 0.25 * label_loss, rtol=1e-4)


@pytest.mark.parametrize("head", ["binary", "multiclass"])
def test_unlabeled_rows_are_learned_from_the_teacher_alone(head):
  """Rows with labels -1 (input_pipeline's unlabeled rows) add the KL term and no label loss."""
  rng = np.random.default_rng(1)
  k = 1 if head == "binary" else 3
  t, s = rng.normal(0, 2, (6, k)), rng.normal(0, 2, (6, k))
  labels = (np.array([0, 2, -1, 1, -1, 0], np.int32) if head == "multiclass" else
            np.array([[1], [0], [-1], [1], [-1], [0]], np.float32))
  plain = fx.tiny_config("/unused", **{"model.head": head, "distill.label_weight": 0.25})
  mixed = fx.tiny_config("/unused", **{"model.head": head, "distill.label_weight": 0.25,
                                       "distill.unlabeled_dir": "/unlabeled"})
  got = distill.make_loss(mixed)(labels, s, t).numpy()
  kl = 0.75 * 4.0 * distill.distillation_kl(t, s, head, 2.0).numpy()
  np.testing.assert_allclose(got[[2, 4]], kl[[2, 4]], rtol=1e-5)
  labelled = [0, 1, 3, 5]
  np.testing.assert_allclose(got[labelled], distill.make_loss(plain)(
      labels[labelled], s[labelled], t[labelled]).numpy(), rtol=1e-5)


# ---------------------------------------------------------------------------- the student's start
def test_the_student_starts_from_every_other_teacher_layer(data_dir, teacher_dir):
  config, teacher, student, encoder = build_pair(data_dir, teacher_dir)
  assert tuple(config.distill.layers) == (1, 3)        # every other, counted from the top
  assert len(encoder.transformer_layers) == 2
  t_layers = teacher.encoder.transformer_layers
  for j, i in enumerate((1, 3)):
    for s, t in zip(encoder.transformer_layers[j].weights, t_layers[i].weights, strict=True):
      np.testing.assert_array_equal(s.numpy(), t.numpy(), err_msg=s.name)
  # Layer 0 of the student is the teacher's 1, not its 0 (the comparison above can fail).
  assert not np.array_equal(encoder.transformer_layers[0].weights[0].numpy(),
                            t_layers[0].weights[0].numpy())
  # Embeddings, pooler and head are the teacher's too: all of the student's other weights.
  blocks = {id(w) for b in encoder.transformer_layers for w in b.weights}
  t_blocks = {id(w) for b in t_layers for w in b.weights}
  rest = [w for w in student.weights if id(w) not in blocks]
  t_rest = [w for w in teacher.classifier.weights if id(w) not in t_blocks]
  assert len(rest) == len(t_rest) >= 7   # word/position/type embeddings, norm, pooler, head
  for s, t in zip(rest, t_rest, strict=True):
    np.testing.assert_array_equal(s.numpy(), t.numpy(), err_msg=s.name)
  assert not teacher.classifier.trainable and not teacher.classifier.trainable_weights


def test_label_weight_0_moves_the_student_toward_the_teachers_probabilities(
    data_dir, teacher_dir, student_dir):
  config, teacher, fresh, _ = build_pair(data_dir, teacher_dir)
  _, _, trained, _ = build_pair(data_dir, teacher_dir)
  last = restore(trained, os.path.join(student_dir, "checkpoints"))
  assert last.endswith(f"ckpt-{TOTAL}")
  before = mean_kl(teacher.classifier, fresh, config.distill.temperature)
  after = mean_kl(teacher.classifier, trained, config.distill.temperature)
  assert before > 1e-3, before                         # cutting 2 of 4 layers changed it
  assert after < 0.3 * before, (before, after)


# ------------------------------------------------------------------- export, lineage, resume
def test_the_students_export_serves_its_weights_and_names_its_teacher(
    data_dir, teacher_dir, student_dir):
  export_dir = os.path.join(student_dir, "export")
  metadata = export_info.check_export(export_dir)
  _, teacher, student, _ = build_pair(data_dir, teacher_dir)
  restore(student, os.path.join(student_dir, "best"))   # what the final evaluation exported
  texts = ["good w1 w2", "bad w3 w4 w5", "w6", "", "w7 good bad"]
  text_encoder = tokenization.TextEncoder(fx.VOCAB, True, 32)
  expected = helpers.reference_probabilities(student, text_encoder, "binary", texts)
  loaded = tf.saved_model.load(export_dir)
  got = helpers.serve(loaded, texts)
  np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-5, atol=1e-6)
  assert list(loaded.signatures) == list(export_info.SIGNATURES)
  # Not the teacher's probabilities: the export serves the student.
  assert not np.allclose(helpers.reference_probabilities(teacher.classifier, text_encoder,
                                                         "binary", texts), expected, atol=1e-4)

  teacher_config = os.path.join(teacher_dir, "config.json")
  sha = hashlib.sha256(open(teacher_config, "rb").read()).hexdigest()
  recorded = json.load(open(os.path.join(student_dir, "config.json")))
  assert recorded["distill"]["teacher"] == teacher_dir
  assert recorded["distill"]["layers"] == [1, 3]
  assert recorded["distill"]["teacher_config_sha256"] == sha
  assert recorded["encoder"]["num_layers"] == 4     # the teacher's encoder, cut to layers
  lineage = metadata["teacher"]
  assert (lineage["model_dir"], lineage["config_sha256"], lineage["layers"],
          lineage["of_layers"], lineage["data_dir"]) == (teacher_dir, sha, [1, 3], 4, data_dir)
  assert lineage["checkpoint"].startswith(os.path.join(teacher_dir, "best", "ckpt-"))
  assert (metadata["labels"], metadata["head"]) == (["0", "1"], "binary")

  # The student's checkpoints hold the student alone: as many model weights as it has.
  values = read_checkpoint(os.path.join(student_dir, "checkpoints", f"ckpt-{TOTAL}"))
  model_weights = [n for n in values if n.startswith("model/") and "OPTIMIZER_SLOT" not in n]
  assert len(model_weights) == len(student.weights) < len(teacher.classifier.weights)


def test_a_resumed_student_restores_its_own_checkpoint(data_dir, teacher_dir, student_dir):
  """Fast: what a re-run builds (the student cut from the teacher) takes the student's
  checkpoint whole; the slow test below trains through a resume."""
  config = distill.resolve_config(student_config(data_dir, teacher_dir), student_dir)
  manifest, strategy = schema.read_manifest(data_dir), one_device()
  teacher = distill.build_teacher(config, manifest, strategy)
  student, optimizer = train.build_model_and_optimizer(config, manifest, strategy, "float32",
                                                       TOTAL, teacher)
  state = checkpointing.create_state(student, optimizer, strategy, student_dir,
                                     keep_checkpoints=3, scratch=False)
  assert checkpointing.restore_latest(state, student_dir).endswith(f"ckpt-{TOTAL}")
  values = read_checkpoint(os.path.join(student_dir, "checkpoints", f"ckpt-{TOTAL}"))
  head = "model/layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE"
  assert head in values
  np.testing.assert_array_equal(student.get_layer("logits").kernel.numpy(), values[head])
  assert not np.array_equal(values[head], teacher.classifier.get_layer("logits").kernel.numpy())
  assert int(state.step.numpy()) == TOTAL


def test_a_student_reads_unlabeled_rows_beside_the_training_split(
    data_dir, teacher_dir, unlabeled_dir, tmp_path, capsys):
  model_dir = str(tmp_path / "with_unlabeled")
  config = student_config(data_dir, teacher_dir, **{
      "distill.unlabeled_dir": unlabeled_dir, "train.steps_per_epoch": 0, "train.epochs": 1,
      "export": False})
  train.train_and_evaluate(config, data_dir, model_dir, one_device())
  # An epoch is one pass over 128 labelled + 64 unlabeled rows (all three of its splits).
  last = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  assert last.endswith(f"ckpt-{(128 + 64) // 16}")
  assert f"192 train (of which 64 unlabeled, from {unlabeled_dir})" in capsys.readouterr().out
  recorded = json.load(open(os.path.join(model_dir, "config.json")))
  assert recorded["distill"]["unlabeled_dir"] == unlabeled_dir
  final = json.load(open(os.path.join(model_dir, "eval_results.json")))["final"]
  assert final["validation"]["num_examples"] == 32   # evaluation: the labelled data only

  from trainer import input_pipeline, plan
  run = plan.plan_run(distill.resolve_config(config, model_dir), data_dir, model_dir,
                      one_device())
  src = run.source("train", config.model)
  batches = input_pipeline.train_batches(src, plan.resolved_config(config, run).train,
                                         config.data)
  # 64 steps: one pool of 1,024 rows sorted by length (input_pipeline.POOL_BATCHES) that holds
  # 5 full shuffled passes over the 192 rows (5 x 64 unlabeled) and 64 rows of a 6th.
  assert input_pipeline.POOL_BATCHES == 64
  labels = np.concatenate([b["labels"][:, 0] for b in batches.take(64).as_numpy_iterator()])
  assert sorted(set(labels.tolist())) == [-1.0, 0.0, 1.0]
  assert 5 * 64 <= (labels == -1).sum() <= 5 * 64 + 64


@pytest.mark.slow  # default-tier time (issue 37's 8 minutes)
def test_wandb_uses_the_teachers_export_as_its_model_artifact(data_dir, teacher_dir,
                                                              student_dir):
  """With a stand-in for the W&B run (no network): online, the teacher's export is the run's
  input `model` artifact under the name its own save run used; offline, the config names it."""
  from bertcore import wandb_mode
  from trainer import tracking

  class Config(dict):
    def update(self, values, allow_val_change=False):
      super().update(values)

  class FakeRun:
    def __init__(self):
      self.config, self.used = Config(), []

    def use_artifact(self, artifact):
      self.used.append(artifact)

  online, offline = FakeRun(), FakeRun()
  config = distill.resolve_config(student_config(data_dir, teacher_dir), student_dir)
  teacher = distill.lineage(config)["teacher"]
  tracking.Run(online, "online").use_teacher(teacher)
  tracking.Run(offline, "offline").use_teacher(teacher)
  [artifact] = online.used
  assert artifact.type == "model"
  assert artifact.name == wandb_mode.model_artifact(schema.read_manifest(data_dir))
  assert "saved_model.pb" in artifact.manifest.entries
  assert offline.used == [] and offline.config["teacher"] == teacher_dir == online.config[
      "teacher"]


@pytest.mark.slow
def test_a_resumed_distillation_ends_as_an_uninterrupted_one(data_dir, teacher_dir, student_dir,
                                                             tmp_path, capsys):
  model_dir = str(tmp_path / "resumed")
  stopped = train.train_and_evaluate(
      student_config(data_dir, teacher_dir, **{"train.stop_at_step": 11, "export": False}),
      data_dir, model_dir, one_device())
  assert stopped["stopped_at_step"] == 11
  train.train_and_evaluate(student_config(data_dir, teacher_dir, export=False), data_dir,
                           model_dir, one_device())
  assert "resuming from" in capsys.readouterr().out
  got = read_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{TOTAL}"))
  want = read_checkpoint(os.path.join(student_dir, "checkpoints", f"ckpt-{TOTAL}"))
  assert got.keys() == want.keys()
  for name in want:   # weights, Adam's slots and iterations, step, epoch
    if name != "save_counter/.ATTRIBUTES/VARIABLE_VALUE":   # counts saves, not steps
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# ------------------------------------------------------------------------------- bad input
def test_bad_teachers_and_layers_are_refused_in_one_line(data_dir, teacher_dir, student_dir,
                                                         tmp_path):
  model_dir = str(tmp_path / "refused")

  def refused(error, match, data=data_dir, **overrides):
    with pytest.raises(error, match=match) as e:
      train.train_and_evaluate(student_config(data, teacher_dir, **overrides), data, model_dir,
                               one_device())
    assert "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(model_dir, "checkpoints"))

  refused(ValueError, r"the teacher's encoder has 4 layers \(0 to 3\); \[4\] is outside",
          **{"distill.layers": (1, 4)})
  refused(ValueError, "must be increasing", **{"distill.layers": (3, 1)})
  refused(ValueError, "does not exist", **{"distill.teacher": str(tmp_path / "nowhere")})
  (tmp_path / "empty").mkdir()
  refused(ValueError, "no config.json there", **{"distill.teacher": str(tmp_path / "empty")})
  refused(ValueError, "has a binary head and the student a multiclass one",
          **{"model.head": "multiclass"})
  refused(ValueError, "temperature must be positive", **{"distill.temperature": 0.0})
  refused(ValueError, "is itself a student", **{"distill.teacher": student_dir})
  # A finished student's model_dir resumed with other layers, or as a plain run.
  with pytest.raises(ValueError, match="holds a student with a different distill.layers"):
    train.train_and_evaluate(student_config(data_dir, teacher_dir, **{"distill.layers": (0, 3)}),
                             data_dir, student_dir, one_device())
  with pytest.raises(ValueError, match="holds a student of"):
    train.train_and_evaluate(fx.tiny_config(data_dir), data_dir, student_dir, one_device())

  # Unlabeled rows: with a teacher, unlabeled, like the training data, not multilabel.
  with pytest.raises(ValueError, match="set --config.distill.teacher too"):
    train.train_and_evaluate(fx.tiny_config(data_dir, **{"distill.unlabeled_dir": data_dir}),
                             data_dir, model_dir, one_device())
  refused(schema.DataError, "holds labelled data", **{"distill.unlabeled_dir": data_dir})
  longer = str(tmp_path / "longer")
  fx.write_data_dir(longer, {"train": unlabeled_rows(8, 1)}, labels=(), max_seq_length=64)
  refused(schema.DataError, "has max_seq_length=64 but the training data 32",
          **{"distill.unlabeled_dir": longer})

  other = str(tmp_path / "other_labels")
  fx.write_data_dir(other, {"train": fx.example_rows(32, seed=1),
                            "validation": fx.example_rows(8, seed=2)}, labels=("neg", "pos"))
  fx.write_vocab(other)
  refused(schema.DataError, r"predicts labels \['0', '1'\] but the student's data gives "
          r"\['neg', 'pos'\]", data=other)


@pytest.mark.slow  # default-tier time (issue 37's 8 minutes)
def test_an_encoder_directory_of_the_students_layers_holds_those_layers(tmp_path):
  """write_encoder_layers: the pretrained encoder's layers 1 and 3 of 4 (a plain run's start)."""
  from bertcore import files
  from trainer import encoders
  bert_config = {"vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 4,
                 "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu"}
  full = encoders.build_bert_encoder(bert_config)
  ids = tf.zeros([1, 2], tf.int32)
  full(dict(input_word_ids=ids, input_mask=ids + 1, input_type_ids=ids))
  source, out = str(tmp_path / "full"), str(tmp_path / "cut")
  tf.train.Checkpoint(encoder=full).write(os.path.join(source, encoders.CHECKPOINT_PREFIX))
  helpers.write_vocab(source)
  files.write_json(os.path.join(source, encoders.CONFIG_FILE), bert_config)

  assert distill.write_encoder_layers(source, ("1", "3"), out)["num_hidden_layers"] == 2
  cut = encoders.build_bert_encoder(encoders.read_bert_config(out))
  encoders.load_encoder_weights(cut, out)     # every value used, every variable restored
  for j, i in enumerate((1, 3)):
    for c, f in zip(cut.transformer_layers[j].weights, full.transformer_layers[i].weights,
                    strict=True):
      np.testing.assert_array_equal(c.numpy(), f.numpy(), err_msg=c.name)
  assert not np.array_equal(cut.transformer_layers[0].weights[0].numpy(),
                            full.transformer_layers[0].weights[0].numpy())
  embeddings = lambda e: e.get_embedding_table().numpy()
  np.testing.assert_array_equal(embeddings(cut), embeddings(full))
  with open(os.path.join(out, encoders.VOCAB_FILE)) as a, open(
      os.path.join(source, encoders.VOCAB_FILE)) as b:
    assert a.read() == b.read()
  with pytest.raises(ValueError, match="has 4 layers"):
    distill.write_encoder_layers(source, (1, 4), str(tmp_path / "bad"))
