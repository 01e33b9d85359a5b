"""The optimizer: AdamW with linear warm-up and linear decay, optionally lazy on embeddings.

Model Garden's AdamWeightDecay does the arithmetic (bias-corrected Adam, decoupled weight decay
lr * rate * w, no decay of LayerNorm and bias). Two things differ from its create_optimizer:
- the schedule: `train.lr_schedule=linear` warms up to the peak and then decays linearly over
  the remaining steps (what PyTorch / Hugging Face do); `polynomial_from_zero` is Model Garden's
  WarmUp over a decay that starts at step 0 (at the end of warm-up it is already
  (1 - warmup_fraction) x peak);
- `train.lazy_embeddings`: a sparse gradient (the word-embedding table's IndexedSlices, one row
  per distinct token of the batch) updates only the rows it names. Keras' Adam decays the
  moments of all 30,522 rows and rewrites the whole table on every step, which costs up to a
  third of a MiniLM step on CPU (benchmarks/results/step.md). Rows of tokens absent from a batch
  keep their moments until they appear again (as TF Addons' LazyAdam).
"""
import tensorflow as tf
import tf_keras
from official.modeling.optimization import legacy_adamw
from official.nlp import optimization

# Model Garden's (and google-research/bert's) exclusions from weight decay.
NO_WEIGHT_DECAY = ["LayerNorm", "layer_norm", "bias"]


class LinearWarmupDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """0 -> peak linearly over warmup_steps, then peak -> end_lr linearly until total_steps."""

  def __init__(self, peak, warmup_steps, total_steps, end_lr=0.0):
    super().__init__()
    self.peak, self.end_lr = float(peak), float(end_lr)
    self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = self.peak * step / max(self.warmup_steps, 1)
    done = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
    decay = self.peak + (self.end_lr - self.peak) * tf.clip_by_value(done, 0.0, 1.0)
    return tf.where(step < self.warmup_steps, warm, decay)

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps, "end_lr": self.end_lr}


class AdamW(legacy_adamw.AdamWeightDecay):
  """Model Garden's AdamWeightDecay; with lazy=True a sparse gradient touches only its rows."""

  def __init__(self, *args, lazy=False, **kwargs):
    super().__init__(*args, **kwargs)
    self.lazy = lazy

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    if not self.lazy:
      return super()._resource_apply_sparse(grad, var, indices, apply_state)
    # indices are distinct here: Keras sums repeated rows before calling this.
    key = (var.device, var.dtype.base_dtype)
    c = (apply_state or {}).get(key) or self._fallback_apply_state(*key)
    m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
    m_rows = c["beta_1_t"] * m.sparse_read(indices) + c["one_minus_beta_1_t"] * grad
    v_rows = c["beta_2_t"] * v.sparse_read(indices) + c["one_minus_beta_2_t"] * grad * grad
    update = c["lr"] * m_rows / (tf.sqrt(v_rows) + c["epsilon"])       # c["lr"]: bias-corrected
    if self._do_use_weight_decay(var.name):
      update += c["lr_t"] * c["weight_decay_rate"] * var.sparse_read(indices)
    return tf.group(m.scatter_update(tf.IndexedSlices(m_rows, indices)),
                    v.scatter_update(tf.IndexedSlices(v_rows, indices)),
                    var.scatter_sub(tf.IndexedSlices(update, indices)))


def learning_rate_schedule(train_config, total_steps):
  """The learning rate as a function of the step, for a run of total_steps steps."""
  warmup = int(train_config.warmup_fraction * total_steps)
  peak, end = train_config.learning_rate, train_config.end_learning_rate
  if train_config.lr_schedule == "linear":
    return LinearWarmupDecay(peak, warmup, total_steps, end)
  decay = tf_keras.optimizers.schedules.PolynomialDecay(peak, total_steps, end)
  return optimization.WarmUp(peak, decay, warmup) if warmup else decay


def create_optimizer(train_config, total_steps, policy):
  """AdamW for a run of total_steps steps.

  Args:
    train_config: config.train (learning_rate, end_learning_rate, warmup_fraction, lr_schedule,
      adam_epsilon, weight_decay, lazy_embeddings).
    total_steps: the steps of the whole run (the schedule decays to end_learning_rate there).
    policy: the mixed-precision policy name; mixed_float16 wraps the optimizer in a
      LossScaleOptimizer (float16 gradients underflow without loss scaling).
  Returns:
    a tf_keras optimizer; create it under strategy.scope().
  """
  optimizer = AdamW(
      learning_rate=learning_rate_schedule(train_config, total_steps),
      weight_decay_rate=train_config.weight_decay, beta_1=0.9, beta_2=0.999,
      epsilon=train_config.adam_epsilon, exclude_from_weight_decay=NO_WEIGHT_DECAY,
      gradient_clip_norm=0.0,  # the train step clips, after the cross-replica sum
      lazy=train_config.lazy_embeddings)
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
