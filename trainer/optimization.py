"""The optimizer: AdamW with linear warmup and linear decay (Model Garden's create_optimizer)."""
import tf_keras
from official.nlp import optimization


def create_optimizer(train_config, total_steps, policy):
  """AdamW for a run of total_steps steps.

  Args:
    train_config: config.train (learning_rate, end_learning_rate, warmup_fraction,
      weight_decay).
    total_steps: the steps of the whole run (the schedule decays to end_learning_rate there).
    policy: the mixed-precision policy name; mixed_float16 wraps the optimizer in a
      LossScaleOptimizer (float16 gradients underflow without loss scaling).
  Returns:
    a tf_keras optimizer; create it under strategy.scope().
  """
  optimizer = optimization.create_optimizer(
      train_config.learning_rate, total_steps,
      int(train_config.warmup_fraction * total_steps),
      end_lr=train_config.end_learning_rate, optimizer_type="adamw")
  optimizer.weight_decay_rate = train_config.weight_decay
  optimizer.gradient_clip_norm = 0.0  # the train step clips, after the cross-replica sum
  if policy == "mixed_float16":
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer


def current_learning_rate(optimizer):
  """The learning rate the optimizer applies at its current iteration, as a float."""
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)
  lr = optimizer.learning_rate
  if callable(lr):
    lr = lr(optimizer.iterations)
  return float(lr.numpy()) if hasattr(lr, "numpy") else float(lr)
