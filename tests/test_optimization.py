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
