"""The compiled step functions: a training call of n steps, an evaluation call of n batches.

Both take an iterator over a distributed dataset (trainer.input_pipeline batches) and run
under strategy.run; they hold no state of their own beyond the objects passed in.
"""
import tensorflow as tf
import tf_keras

from bertcore import names
from trainer import model as model_lib

_SUM = tf.distribute.ReduceOp.SUM


# The replica steps are traced as written (do_not_convert): only the step loops below need
# autograph (tf.range); the model, loss and optimizer code branch in Python on static facts, and
# converting all of it (every Keras layer's call) cost seconds of tracing per run.
_as_written = tf.autograph.experimental.do_not_convert


def make_train_step(strategy, classifier, optimizer, global_step, train_config, head,
                    xla=False, teacher=None, loss_fn=None):
  """A tf.function train_fn(iterator, num_steps, preempt) running num_steps training steps.

  Args:
    strategy: the tf.distribute.Strategy the variables were created under.
    classifier: the tf_keras model: dict of int32 [b, len] inputs -> float32 logits [b, K].
    optimizer: from trainer.optimization.create_optimizer.
    global_step: int64 variable, incremented once per step.
    train_config: config.train (global_batch_size, class_weights, pos_weight, clip_norm).
    head: binary | multiclass | multilabel.
    xla: jit-compile the forward and backward pass.
    teacher: optional frozen classifier (a distillation teacher, trainer/distill.py) whose
      logits each step computes first (training=False, no gradient) and passes to loss_fn.
    loss_fn: optional loss_fn(labels, logits, teacher_logits or None) -> float32 [b];
      default: model.per_example_loss with train_config's weights.
  Returns:
    train_fn(iterator, num_steps: int32 scalar, preempt: float32 scalar 0/1) ->
      (losses float32 [n], finite bool [n], real tokens, padded tokens, preempt flag summed
      over replicas). A step whose loss or gradient norm is not finite applies no update.
  """
  forward_backward = _make_forward_backward(classifier, optimizer, train_config, head, teacher,
                                            loss_fn)
  if xla:
    forward_backward = tf.function(forward_backward, jit_compile=True)
  replica_step = _make_replica_step(strategy, classifier, optimizer, forward_backward,
                                    train_config.clip_norm)

  @tf.function
  def train_fn(iterator, num_steps, preempt):
    losses = tf.TensorArray(tf.float32, size=num_steps)
    finites = tf.TensorArray(tf.bool, size=num_steps)
    real = padded = flag = tf.constant(0.0)
    for i in tf.range(num_steps):
      outputs = strategy.run(replica_step, args=(next(iterator), preempt))
      loss, finite, r, p, f = [strategy.experimental_local_results(x)[0] for x in outputs]
      losses = losses.write(i, loss)
      finites = finites.write(i, finite)
      real += r
      padded += p
      flag = tf.maximum(flag, f)
      global_step.assign_add(1)
    return losses.stack(), finites.stack(), real, padded, flag

  return train_fn


def _make_forward_backward(classifier, optimizer, train_config, head, teacher=None,
                           loss_fn=None):
  """(features, labels) -> (this replica's share of the loss, gradients or None per var)."""
  loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
  global_batch = float(train_config.global_batch_size)
  class_weights = list(train_config.class_weights) or None
  if loss_fn is None:
    def loss_fn(labels, logits, unused_teacher_logits):
      return model_lib.per_example_loss(labels, logits, head, train_config.pos_weight,
                                        class_weights)

  def forward_backward(features, labels):
    # The teacher runs before the tape: nothing of its forward pass is kept for the backward.
    teacher_logits = (None if teacher is None else
                      tf.stop_gradient(teacher(features, training=False)))   # float32 [b, K]
    with tf.GradientTape() as tape:
      logits = classifier(features, training=True)                  # float32 [b, K]
      per_example = loss_fn(labels, logits, teacher_logits)
      # Divide by the GLOBAL batch: the cross-replica sum of gradients is then the mean.
      loss = tf.reduce_sum(per_example) / global_batch
      scaled = optimizer.get_scaled_loss(loss) if loss_scaled else loss
    # None for variables the loss does not use (the pooler under mean pooling).
    return loss, tape.gradient(scaled, classifier.trainable_variables)

  return forward_backward


def _make_replica_step(strategy, classifier, optimizer, forward_backward, clip_norm):
  """One replica's step: gradients summed over replicas, clipped, applied if finite."""
  loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
  tvars = classifier.trainable_variables

  def replica_step(batch, preempt):
    features = {k: batch[k] for k in names.MODEL_INPUTS}
    loss, grads = forward_backward(features, batch["labels"])
    used = [(g, v) for g, v in zip(grads, tvars) if g is not None]
    grads, used_vars = [g for g, _ in used], [v for _, v in used]
    ctx = tf.distribute.get_replica_context()
    if strategy.num_replicas_in_sync > 1:
      # The embedding gradient is IndexedSlices with one row per token; all-gathering
      # those fails when replicas hold different numbers of tokens (multi-worker: each
      # worker buckets its own batches). Dense all-reduce works for any shapes.
      grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
               for g in grads]
    else:
      # One row per distinct token, so that the global norm is the norm of the gradient
      # (repeated rows' squares summed apart would understate it) and a lazy update is cheap.
      grads = [_sum_repeated_rows(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    grads = ctx.all_reduce(_SUM, grads)
    loss = ctx.all_reduce(_SUM, loss)
    if loss_scaled:
      grads = optimizer.get_unscaled_gradients(grads)
    norm = tf.linalg.global_norm(grads)
    if clip_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    if loss_scaled:
      # LossScaleOptimizer skips non-finite gradients itself (and lowers the scale): an
      # overflow of the scaled float16 gradients is routine, not a bad step.
      finite = tf.math.is_finite(loss)
      optimizer.apply_gradients(zip(grads, used_vars), experimental_aggregate_gradients=False)
    else:
      finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))
      _apply_if(optimizer, grads, used_vars, finite)
    mask = tf.cast(features["input_mask"], tf.float32)
    real = ctx.all_reduce(_SUM, tf.reduce_sum(mask))
    padded = ctx.all_reduce(_SUM, tf.cast(tf.size(mask), tf.float32))
    # Any worker's SIGTERM reaches all workers at the same step, so they save together.
    # (identity: a tensor of this replica; the same input object on every replica would be
    # regrouped into one value that all_reduce cannot place.)
    flag = ctx.all_reduce(_SUM, tf.identity(preempt))
    return loss, finite, real, padded, flag

  return _as_written(replica_step)


def _sum_repeated_rows(slices):
  """IndexedSlices with repeated indices -> the same gradient with each index once."""
  rows, position = tf.unique(slices.indices)
  values = tf.math.unsorted_segment_sum(slices.values, position, tf.size(rows))
  return tf.IndexedSlices(values, rows, slices.dense_shape)


def _apply_if(optimizer, grads, tvars, finite):
  """Applies the update on every replica, or on none when the step is not finite."""
  def cross_replica(distribution, grads, finite):
    ok = distribution.experimental_local_results(finite)[0]

    def apply():
      return tf.group(distribution.extended.call_for_each_replica(
          lambda g: optimizer.apply_gradients(zip(g, tvars),
                                              experimental_aggregate_gradients=False),
          args=(grads,)))
    # The cond must be taken in cross-replica context: apply_gradients calls merge_call,
    # which a cond branch in replica context may not (as LossScaleOptimizer does it).
    return tf.cond(ok, apply, tf.no_op)
  return tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite))


EVAL_OUTPUTS = ("probs", "logits", "labels", "weights", "loss")


def make_eval_step(strategy, classifier, head):
  """A tf.function eval_fn(iterator, num_steps) running num_steps evaluation batches.

  One call runs many batches, so that the host's work (a call, copies to numpy) is per call,
  not per batch. Every worker gets every replica's rows (strategy.gather).
  Returns:
    eval_fn(iterator, num_steps: int32 scalar) -> {probs float32 [n, K] or [n] (binary),
      logits float32 [n, K] (what temperature scaling divides), labels [n, ...],
      weights float32 [n], loss float32 [n]}, n = num_steps * global batch; weights are 0 for
      the filler rows that pad evaluation to equal batches.
  """
  dtypes = {"probs": tf.float32, "logits": tf.float32,
            "labels": tf.int32 if head == "multiclass" else tf.float32,
            "weights": tf.float32, "loss": tf.float32}

  def replica_step(batch):
    features = {k: batch[k] for k in names.MODEL_INPUTS}
    logits = classifier(features, training=False)
    return {"probs": model_lib.probabilities(logits, head), "logits": logits,
            "labels": batch["labels"],
            "weights": batch["weights"],
            "loss": model_lib.per_example_loss(batch["labels"], logits, head)}
  replica_step = _as_written(replica_step)

  @tf.function
  def eval_fn(iterator, num_steps):
    arrays = tuple(tf.TensorArray(dtypes[k], size=num_steps) for k in EVAL_OUTPUTS)
    for i in tf.range(num_steps):
      outputs = strategy.run(replica_step, args=(next(iterator),))
      arrays = tuple(a.write(i, tf.cast(strategy.gather(outputs[k], axis=0), dtypes[k]))
                     for a, k in zip(arrays, EVAL_OUTPUTS))
    return {k: a.concat() for k, a in zip(EVAL_OUTPUTS, arrays)}

  return eval_fn
