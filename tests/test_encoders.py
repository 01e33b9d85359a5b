"""trainer.encoders.MatmulAttention and FusedDense: the encoder in the forms CPUs run fastest,
the same model as Model Garden's einsums."""
import numpy as np
import pytest

import bertcore  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from bertcore import private_apis
from trainer import encoders

TINY = dict(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=16, hidden_act="gelu_exact", max_position_embeddings=16)


def _inputs(batch=3, length=7, seed=0):
  ids = tf.constant(np.random.RandomState(seed).randint(1, 40, [batch, length]), tf.int32)
  return dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=tf.zeros_like(ids))


def _built_encoder():
  tf_keras.utils.set_random_seed(3)
  encoder = encoders.build_bert_encoder(TINY, dropout=0.0)
  encoder(_inputs())
  return encoder


def _outputs_and_grads(encoder, inputs):
  with tf.GradientTape() as tape:
    out = encoder(inputs)["sequence_output"]
    loss = tf.reduce_sum(out * out)
  grads = tape.gradient(loss, encoder.trainable_variables)
  return out.numpy(), [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]


def _ops(encoder, inputs):
  graph = tf.function(lambda x: encoder(x)["sequence_output"]).get_concrete_function(inputs).graph
  return [node.op for node in graph.as_graph_def().node]


def _assert_same_outputs_and_grads(encoder, inputs, change):
  """Runs change(encoder) and asserts the encoder's outputs and gradients did not move."""
  names_before = [v.name for v in encoder.variables]
  want_out, want_grads = _outputs_and_grads(encoder, inputs)
  change(encoder)
  got_out, got_grads = _outputs_and_grads(encoder, inputs)
  assert [v.name for v in encoder.variables] == names_before
  np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-5)
  assert [g is None for g in got_grads] == [g is None for g in want_grads]  # the pooler's
  for got, want in zip(got_grads, want_grads):
    if want is not None:
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_matmul_attention_computes_the_einsums_outputs_and_gradients():
  def change(encoder):
    assert encoders.use_matmul_attention(encoder) == TINY["num_hidden_layers"]
  _assert_same_outputs_and_grads(_built_encoder(), _inputs(length=5, seed=1), change)


def test_matmul_attention_replaces_the_attention_einsums_and_can_be_undone():
  encoder, inputs = _built_encoder(), _inputs()
  layers = TINY["num_hidden_layers"]
  einsums = _ops(encoder, inputs).count("Einsum")
  encoders.use_matmul_attention(encoder)
  assert _ops(encoder, inputs).count("Einsum") == einsums - 2 * layers  # scores, combine
  assert encoders.use_matmul_attention(encoder, enabled=False) == layers
  assert _ops(encoder, inputs).count("Einsum") == einsums


FORMS = {"matmul_attention": encoders.use_matmul_attention, "fused_dense": encoders.use_fused_dense}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("write_new_form", [True, False])
def test_a_checkpoint_of_either_form_restores_into_the_other(tmp_path, form, write_new_form):
  inputs = _inputs(seed=2)
  writer = _built_encoder()
  FORMS[form](writer, enabled=write_new_form)
  path = tf.train.Checkpoint(encoder=writer).write(str(tmp_path / "ckpt"))
  tf_keras.utils.set_random_seed(9)  # different initial weights in the reader
  reader = encoders.build_bert_encoder(TINY, dropout=0.0)
  reader(inputs)
  FORMS[form](reader, enabled=not write_new_form)
  tf.train.Checkpoint(encoder=reader).read(path).assert_consumed()
  np.testing.assert_allclose(reader(inputs)["sequence_output"].numpy(),
                             writer(inputs)["sequence_output"].numpy(), rtol=1e-5, atol=1e-5)


def test_matmul_attention_applies_the_mask_like_the_einsum():
  encoder = _built_encoder()
  ids = _inputs(batch=2, length=6, seed=4)
  ids["input_mask"] = tf.constant([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], tf.int32)
  einsum_out = encoder(ids)["sequence_output"].numpy()
  encoders.use_matmul_attention(encoder)
  np.testing.assert_allclose(encoder(ids)["sequence_output"].numpy(), einsum_out,
                             rtol=1e-5, atol=1e-5)
  ids["input_mask"] = tf.ones_like(ids["input_mask"])  # the mask matters: a different output
  assert np.abs(encoder(ids)["sequence_output"].numpy()[0] - einsum_out[0]).max() > 1e-3


def test_the_classifier_runs_its_attention_as_matmuls():
  from bertcore import schema
  from trainer import config as config_lib, model as model_lib
  config = config_lib.default_config()
  config.encoder.update(kind="random", hidden_size=8, num_layers=1, num_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
  manifest = schema.Manifest(labels=["a", "b"], vocab_sha256="", max_seq_length=16, splits={},
                             vocab_size=40)
  _, encoder = model_lib.build_classifier(config, manifest)
  kinds = [type(block._attention_layer).__name__ for block in encoder.transformer_layers]
  assert kinds == ["MatmulAttention"]
  ffn, = private_apis.feedforward_layers(encoder)
  dense = [ffn.intermediate, ffn.output] + private_apis.attention_dense_layers(
      encoder.transformer_layers[0]._attention_layer)
  assert [type(layer).__name__ for layer in dense] == ["FusedDense"] * 6


@pytest.mark.parametrize("matmul_attention", [False, True])
def test_fused_dense_computes_the_einsums_outputs_and_gradients(matmul_attention):
  encoder = _built_encoder()
  encoders.use_matmul_attention(encoder, enabled=matmul_attention)
  def change(encoder):
    assert encoders.use_fused_dense(encoder) == 6 * TINY["num_hidden_layers"]
  _assert_same_outputs_and_grads(encoder, _inputs(length=5, seed=1), change)


def test_fused_dense_moves_the_gelu_into_the_dense_layer_and_can_be_undone():
  encoder, inputs = _built_encoder(), _inputs()
  layers = TINY["num_hidden_layers"]
  ops = _ops(encoder, inputs)
  einsums, erfs = ops.count("Einsum"), ops.count("Erf") + ops.count("Erfc")
  assert erfs == layers  # one exact GELU per block
  encoders.use_fused_dense(encoder)
  ops = _ops(encoder, inputs)
  assert ops.count("Einsum") == einsums - 6 * layers  # q, k, v, output, intermediate, output
  assert ops.count("Erf") + ops.count("Erfc") == erfs  # still one GELU per block, not two
  for ffn in private_apis.feedforward_layers(encoder):
    assert ffn.activation.activation is tf_keras.activations.linear
    assert ffn.intermediate.activation is not tf_keras.activations.linear
  assert encoders.use_fused_dense(encoder) == 6 * layers  # a second call changes nothing more
  assert _ops(encoder, inputs).count("Erf") + _ops(encoder, inputs).count("Erfc") == erfs
  assert encoders.use_fused_dense(encoder, enabled=False) == 6 * layers
  assert _ops(encoder, inputs).count("Einsum") == einsums
  for ffn in private_apis.feedforward_layers(encoder):
    assert ffn.intermediate.activation is tf_keras.activations.linear
    assert type(ffn.intermediate) is tf_keras.layers.EinsumDense


def test_fused_dense_leaves_other_encoders_alone():
  inputs = tf_keras.Input([4, 8])
  model = tf_keras.Model(inputs, tf_keras.layers.EinsumDense("abc,cd->abd", (4, 3))(inputs))
  assert encoders.use_fused_dense(model) == 0
  assert type(model.layers[-1]) is tf_keras.layers.EinsumDense


def test_fused_dense_computes_in_the_mixed_precision_dtype():
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    encoder, inputs = _built_encoder(), _inputs(length=5, seed=1)
    intermediate = private_apis.feedforward_layers(encoder)[0].intermediate
    x = tf.random.stateless_normal([3, 5, TINY["hidden_size"]], seed=[1, 2])
    einsum_out, einsum_seq = intermediate(x), encoder(inputs)["sequence_output"]
    encoders.use_fused_dense(encoder)
    fused_out, fused_seq = intermediate(x), encoder(inputs)["sequence_output"]
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  assert fused_out.dtype == einsum_out.dtype == tf.bfloat16
  assert intermediate.kernel.dtype == tf.float32  # the variables stay float32
  gelu = tf_keras.activations.gelu(tf.cast(einsum_out, tf.float32))  # the einsum form's is apart
  np.testing.assert_allclose(tf.cast(fused_out, tf.float32).numpy(), gelu.numpy(),
                             rtol=0.02, atol=0.02)
  np.testing.assert_allclose(fused_seq.numpy(), einsum_seq.numpy(), rtol=0.05, atol=0.05)
