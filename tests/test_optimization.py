"""trainer/optimization.py: the schedules and the lazy AdamW update of embedding rows."""
import bertcore  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import pytest
import tensorflow as tf

from trainer import config as config_lib
from trainer import optimization
from trainer import steps


def _train_config(**overrides):
  train = config_lib.default_config().train
  train.update(overrides)
  return train


def _rates(schedule, steps_):
  return [float(schedule(s)) for s in steps_]


def test_linear_schedule_warms_up_to_the_peak_then_decays_to_the_end_rate():
  schedule = optimization.learning_rate_schedule(
      _train_config(learning_rate=1e-3, warmup_fraction=0.1, lr_schedule="linear",
                    end_learning_rate=0.0), total_steps=100)
  assert _rates(schedule, [0, 5, 10, 55, 100, 120]) == pytest.approx(
      [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], abs=1e-9)


def test_polynomial_from_zero_is_model_gardens_schedule():
  schedule = optimization.learning_rate_schedule(
      _train_config(learning_rate=1e-3, warmup_fraction=0.1,
                    lr_schedule="polynomial_from_zero"), total_steps=100)
  # At the end of warm-up Model Garden's decay has already run for 10 of 100 steps.
  assert _rates(schedule, [5, 10, 55, 100]) == pytest.approx([5e-4, 9e-4, 4.5e-4, 0.0],
                                                            abs=1e-9)


def _one_update(lazy, indices, weight_decay=0.01):
  """A [6, 3] table after one AdamW step with a sparse gradient on `indices`."""
  table = tf.Variable(np.arange(18, dtype=np.float32).reshape(6, 3) / 10, name="table")
  optimizer = optimization.create_optimizer(
      _train_config(learning_rate=0.1, warmup_fraction=0.0, weight_decay=weight_decay,
                    lazy_embeddings=lazy), total_steps=10, policy="float32")
  values = tf.constant(np.ones((len(indices), 3), np.float32))
  grad = tf.IndexedSlices(values, tf.constant(indices), tf.constant([6, 3]))
  optimizer.apply_gradients([(grad, table)])
  return table, optimizer


def test_lazy_update_changes_only_the_rows_of_the_gradient_and_them_as_the_dense_update():
  start = np.arange(18, dtype=np.float32).reshape(6, 3) / 10
  lazy = _one_update(lazy=True, indices=[1, 4])[0].numpy()
  dense = _one_update(lazy=False, indices=[1, 4])[0].numpy()
  untouched = [0, 2, 3, 5]
  np.testing.assert_array_equal(lazy[untouched], start[untouched])
  assert not np.allclose(dense[untouched], start[untouched])     # dense decays every row
  np.testing.assert_allclose(lazy[[1, 4]], dense[[1, 4]], rtol=1e-6)
  assert (lazy[[1, 4]] < start[[1, 4]]).all()                     # a positive gradient lowers


def test_lazy_moments_are_the_dense_moments_on_the_rows_of_the_gradient():
  lazy = _one_update(lazy=True, indices=[2], weight_decay=0.0)
  dense = _one_update(lazy=False, indices=[2], weight_decay=0.0)
  for slot in ("m", "v"):
    a = lazy[1].get_slot(lazy[0], slot).numpy()
    b = dense[1].get_slot(dense[0], slot).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert np.count_nonzero(a.any(axis=1)) == 1                   # only row 2 has moments


def test_repeated_rows_are_summed_once_before_the_norm():
  grad = tf.IndexedSlices(tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]),
                          tf.constant([3, 3, 1]), tf.constant([5, 2]))
  summed = steps._sum_repeated_rows(grad)  # noqa: SLF001
  dense = tf.convert_to_tensor(grad).numpy()
  np.testing.assert_array_equal(tf.convert_to_tensor(summed).numpy(), dense)
  assert sorted(summed.indices.numpy().tolist()) == [1, 3]
  # The norm of the gradient (2.83) — the rows' squares summed apart would give 2.45.
  assert float(tf.linalg.global_norm([summed])) == pytest.approx(np.linalg.norm(dense))


def test_an_unknown_schedule_is_refused_in_one_line():
  config = config_lib.default_config()
  config.train.lr_schedule = "cosine"
  with pytest.raises(ValueError, match="train.lr_schedule"):
    config_lib.validate(config)


# ------------------------------------------------------------------ layer-wise learning-rate decay
def _tiny_classifier_names(num_layers=3):
  """(encoder variable names, head variable names) of a BertEncoderV2 classifier."""
  import tf_keras
  from trainer import encoders
  encoder = encoders.build_bert_encoder(dict(vocab_size=10, hidden_size=4, num_attention_heads=1,
                                             num_hidden_layers=num_layers, intermediate_size=8))
  inputs = {k: tf_keras.Input(shape=(None,), dtype=tf.int32, name=k)
            for k in ("input_word_ids", "input_mask", "input_type_ids")}
  logits = tf_keras.layers.Dense(1, name="logits")(encoder(inputs)["pooled_output"])
  classifier = tf_keras.Model(inputs, logits)
  encoder_names = [v.name for v in encoder.trainable_variables]
  return encoder_names, [v.name for v in classifier.trainable_variables
                         if v.name not in encoder_names]


def test_layer_decay_multipliers_of_a_three_layer_encoder():
  encoder_names, head_names = _tiny_classifier_names(num_layers=3)
  got = optimization.layer_decay_multipliers(0.5, encoder_names, head_names)
  by_group = {}
  for name, k in got.items():
    by_group.setdefault(optimization.layer_group(name) or "logits", set()).add(k)
  # layer_2 is the top one: x1, like the pooler ("head") and the classifier ("logits").
  assert by_group == {"embeddings": {0.125}, "layer_0": {0.25}, "layer_1": {0.5},
                      "layer_2": {1.0}, "head": {1.0}, "logits": {1.0}}
  assert len(got) == len(encoder_names) + len(head_names) == 5 + 3 * 16 + 2 + 2
  embeddings = {n.split("/", 1)[1] for n, k in got.items() if k == 0.125}
  assert embeddings == {"word_embeddings/embeddings", "position_embedding/embeddings",
                        "type_embeddings/embeddings", "embeddings/layer_norm/gamma",
                        "embeddings/layer_norm/beta"}
  assert optimization.describe_layer_decay(0.5, got) == (
      "layer_decay 0.5 over 3 layers: embeddings x0.125, layer_0 x0.25, layer_1 x0.5, "
      "layer_2 x1, head x1")
  assert optimization.layer_decay_multipliers(1.0, encoder_names, head_names) == {}


def test_the_multiplier_is_the_same_for_every_replica_copy_of_a_variable():
  assert optimization.variable_key("e/transformer/layer_3/output/kernel/replica_1:0") == (
      "e/transformer/layer_3/output/kernel")
  assert optimization.layer_group("e/transformer/layer_3/output/kernel/replica_7:0") == "layer_3"
  assert optimization.layer_group("bert_encoder_v2_4/word_embeddings/embeddings:0") == (
      "embeddings")
  tf1_bert = {"bert/embeddings/word_embeddings": "embeddings",
              "bert/embeddings/LayerNorm/gamma": "embeddings",
              "bert/encoder/layer_11/attention/self/query/kernel": "layer_11",
              "bert/pooler/dense/kernel": "head", "output_weights": None}
  assert {n: optimization.layer_group(n) for n in tf1_bert} == tf1_bert


def test_an_encoder_without_layer_names_is_refused_in_one_line():
  with pytest.raises(ValueError) as error:
    optimization.layer_decay_multipliers(0.9, ["encoder/dense/kernel:0"], ["logits/kernel:0"])
  assert "\n" not in str(error.value)
  assert "train.layer_decay=0.9 needs an encoder whose variables are named by layer" in str(
      error.value)
  assert "'encoder/dense/kernel'" in str(error.value)
  assert optimization.layer_decay_multipliers(1.0, ["encoder/dense/kernel:0"], []) == {}
  config = config_lib.default_config()
  config.train.layer_decay = 1.5
  with pytest.raises(ValueError, match=r"train.layer_decay must be in \(0, 1\]"):
    config_lib.validate(config)


LR, WD, EPS = 0.1, 0.01, 1e-8
DECAYED = {"e/word_embeddings/embeddings": 0.125, "e/transformer/layer_0/dense/kernel": 0.25,
           "e/transformer/layer_2/dense/kernel": 1.0, "logits/kernel": 1.0}


def _first_step(multipliers, sparse, lazy):
  """Variables (by name) after one AdamW step from known weights and gradients."""
  optimizer = optimization.create_optimizer(
      _train_config(learning_rate=LR, warmup_fraction=0.0, weight_decay=WD, adam_epsilon=EPS,
                    lazy_embeddings=lazy), total_steps=10, policy="float32",
      lr_multipliers=multipliers)
  rng = np.random.RandomState(0)
  start = {n: rng.uniform(-1, 1, (4, 3)).astype(np.float32) for n in DECAYED}
  grads = {n: rng.uniform(-2, 2, (4, 3)).astype(np.float32) for n in DECAYED}
  variables = {n: tf.Variable(start[n], name=n) for n in DECAYED}
  pairs = []
  for n, v in variables.items():
    g = tf.constant(grads[n])
    if sparse and "embeddings" in n:   # every row named, so the three paths must agree
      g = tf.IndexedSlices(g, tf.range(4), tf.constant([4, 3]))
    pairs.append((g, v))
  optimizer.apply_gradients(pairs)
  return start, grads, {n: v.numpy() for n, v in variables.items()}


def _expected_first_step(w, g, lr):
  """AdamW's first step at learning rate lr, in float64: decay lr*wd*w, then Adam's step
  (bias-corrected m/sqrt(v) = g/|g|, with epsilon scaled by the bias correction)."""
  w, g = w.astype(np.float64), g.astype(np.float64)
  adam = np.sqrt(1 - 0.999) / (1 - 0.9) * (0.1 * g) / (np.sqrt(0.001) * np.abs(g) + EPS)
  return w - lr * WD * w - lr * adam


@pytest.mark.parametrize("sparse,lazy", [(False, False), (True, True), (True, False)],
                         ids=["dense", "lazy_sparse", "keras_sparse"])
def test_one_step_moves_each_variable_by_its_own_learning_rate(sparse, lazy):
  start, grads, after = _first_step(DECAYED, sparse, lazy)
  for name, k in DECAYED.items():
    np.testing.assert_allclose(after[name], _expected_first_step(start[name], grads[name], k * LR),
                               rtol=1e-6, atol=1e-7, err_msg=name)
  # x1 is today's update, bit for bit; the embeddings move 8x less than the top layer.
  _, _, plain = _first_step(None, sparse, lazy)
  for name in ("e/transformer/layer_2/dense/kernel", "logits/kernel"):
    np.testing.assert_array_equal(after[name], plain[name])
  moved = {n: np.abs(after[n] - start[n]).mean() for n in DECAYED}
  assert moved["e/word_embeddings/embeddings"] < moved["e/transformer/layer_2/dense/kernel"] / 7


def test_a_variable_missing_from_the_multipliers_is_refused():
  with pytest.raises(ValueError, match="no learning-rate multiplier for variable 'other'"):
    optimization.create_optimizer(_train_config(), 10, "float32", {"x": 0.5}).apply_gradients(
        [(tf.ones([2]), tf.Variable(tf.zeros([2]), name="other"))])
