"""The optimizer: AdamW with linear warm-up and linear decay, optionally lazy on embeddings and
with layer-wise learning-rate decay.

Model Garden's AdamWeightDecay does the arithmetic (bias-corrected Adam, decoupled weight decay
lr * rate * w, no decay of LayerNorm and bias). Three things differ from its create_optimizer:
- the schedule: `train.lr_schedule=linear` warms up to the peak and then decays linearly over
  the remaining steps (what PyTorch / Hugging Face do); `polynomial_from_zero` is Model Garden's
  WarmUp over a decay that starts at step 0 (at the end of warm-up it is already
  (1 - warmup_fraction) x peak);
- `train.lazy_embeddings`: a sparse gradient (the word-embedding table's IndexedSlices, one row
  per distinct token of the batch) updates only the rows it names. Keras' Adam decays the
  moments of all 30,522 rows and rewrites the whole table on every step, a large share of a
  MiniLM step on CPU (bench_step in docs/benchmarks.md's retired benchmarks). Rows of tokens absent from a batch
  keep their moments until they appear again (as TF Addons' LazyAdam);
- `train.layer_decay` (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?"):
  encoder layer l of L (1 = lowest) learns at lr x decay^(L - l), the embeddings at
  lr x decay^L, the pooler and the classifier at lr. The multiplier scales the learning rate
  of each variable's update (Adam's step and the decoupled weight decay alike); scaling the
  gradient instead would do nothing, since Adam divides it by its own magnitude. Each
  multiplier is a function of the variable's name alone, so every replica, every worker and a
  resumed run compute the same ones.
"""
import re

import tensorflow as tf
import tf_keras
from official.modeling.optimization import legacy_adamw
from official.nlp import optimization

# Model Garden's (and google-research/bert's) exclusions from weight decay.
NO_WEIGHT_DECAY = ["LayerNorm", "layer_norm", "bias"]

# How Model Garden's BERT encoders (BertEncoderV2 here, BertEncoder in TF-Hub's BERT SavedModels)
# name their variables: "<encoder>/transformer/layer_<i>/..." (i from 0, the lowest), the
# embeddings "word_embeddings/", "position_embedding/", "type_embeddings/", their LayerNorm
# "embeddings/layer_norm/" and ALBERT-style "embedding_projection/"; "pooler_transform/".
# google-research/bert's TF1 checkpoints say "bert/encoder/layer_<i>/", "bert/embeddings/",
# "bert/pooler/".
_LAYER = re.compile(r"(?:^|/)(?:transformer|encoder)/layer_(\d+)/")
_EMBEDDINGS = re.compile(r"(?:^|/)(?:word_embeddings|position_embeddings?|type_embeddings|"
                         r"embeddings|embedding_projection)/")
_POOLER = re.compile(r"(?:^|/)pooler")
# A MirroredVariable's copies are named "<name>/replica_<r>:0" on replicas r > 0.
_REPLICA = re.compile(r"/replica_\d+$")
HEAD = "head"
EMBEDDINGS = "embeddings"


def variable_key(name):
  """A variable's name without ':0' and without the '/replica_<r>' of a mirrored copy: the
  same key for the variable on every replica and every worker, and after a restore."""
  return _REPLICA.sub("", name.split(":")[0])


def layer_group(name):
  """'embeddings', 'layer_<i>' (i from 0, as the variable is named), 'head' for the pooler, or
  None for a name that says none of these."""
  key = variable_key(name)
  layer = _LAYER.search(key)
  if layer:
    return f"layer_{int(layer.group(1))}"
  if _EMBEDDINGS.search(key):
    return EMBEDDINGS
  if _POOLER.search(key):
    return HEAD
  return None


def layer_decay_multipliers(decay, encoder_names, head_names):
  """The learning-rate multiplier of every trainable variable, from the variables' names.

  Args:
    decay: config.train.layer_decay; 1.0 = off.
    encoder_names: names of the encoder's trainable variables (Model Garden naming: see
      layer_group). L, the number of layers, is the number of distinct layer_<i> among them.
    head_names: names of the other trainable variables of the classifier (all at x1).
  Returns:
    {variable_key: multiplier}: embeddings decay^L, layer_<i> decay^(L - 1 - i) (the top layer
    x1), pooler and head x1; {} when decay is 1.0, so that training is unchanged bit for bit.
  Raises:
    ValueError (one line) when decay != 1.0 and an encoder variable cannot be placed in a
    layer: ignoring the setting silently would train something else than asked.
  """
  if decay == 1.0:
    return {}
  groups = {}
  for name in encoder_names:
    group = layer_group(name)
    if group is None:
      raise ValueError(
          f"config.train.layer_decay={decay} needs an encoder whose variables are named by "
          f"layer (Model Garden's transformer/layer_<i>/, word_embeddings/, pooler_transform/), "
          f"but this encoder has {variable_key(name)!r}; use train.layer_decay=1.0 with it")
    groups[variable_key(name)] = group
  layers = sorted({int(g[len("layer_"):]) for g in groups.values() if g.startswith("layer_")})
  if layers != list(range(len(layers))) or not layers:
    raise ValueError(f"config.train.layer_decay={decay} needs an encoder with layers "
                     f"layer_0..layer_<L-1>; this encoder's are {layers}")
  num_layers = len(layers)
  exponents = {EMBEDDINGS: num_layers, HEAD: 0}
  exponents.update({f"layer_{i}": num_layers - 1 - i for i in layers})
  multipliers = {key: float(decay ** exponents[group]) for key, group in groups.items()}
  multipliers.update({variable_key(name): 1.0 for name in head_names})
  return multipliers


def _bottom_up(group):
  """Sort key of a layer_group: embeddings, layer_0, layer_1, ..., head."""
  if group in (EMBEDDINGS, HEAD):
    return -1 if group == EMBEDDINGS else float("inf")
  return int(group[len("layer_"):])


def describe_layer_decay(decay, multipliers):
  """One line: 'layer_decay 0.5 over 3 layers: embeddings x0.125, layer_0 x0.25, ..., head x1'."""
  if not multipliers:
    return f"layer_decay {decay:g}: off (every variable at the learning rate)"
  by_group = {layer_group(key) or HEAD: k for key, k in multipliers.items()}
  groups = sorted(by_group, key=_bottom_up)
  num_layers = sum(g.startswith("layer_") for g in groups)
  return (f"layer_decay {decay:g} over {num_layers} layers: "
          + ", ".join(f"{g} x{by_group[g]:.3g}" for g in groups))


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
  """Model Garden's AdamWeightDecay; with lazy=True a sparse gradient touches only its rows;
  lr_multipliers ({variable_key: float}, layer_decay_multipliers) scale each variable's
  learning rate, for its Adam step and its weight decay."""

  def __init__(self, *args, lazy=False, lr_multipliers=None, **kwargs):
    super().__init__(*args, **kwargs)
    self.lazy = lazy
    self.lr_multipliers = dict(lr_multipliers or {})

  def _scaled_state(self, var, apply_state):
    """apply_state with var's learning rates times its multiplier (apply_state itself at x1).

    Runs when the update is traced, once per variable: the multiplier is a constant in the
    graph. "lr_t" is the scheduled rate (dense Adam kernel, weight decay), "lr" the
    bias-corrected one (sparse paths).
    """
    if not self.lr_multipliers:
      return apply_state
    key = variable_key(var.name)
    if key not in self.lr_multipliers:
      raise ValueError(f"no learning-rate multiplier for variable {key!r} "
                       "(train.layer_decay was computed for another model)")
    k = self.lr_multipliers[key]
    if k == 1.0:
      return apply_state
    device_dtype = (var.device, var.dtype.base_dtype)
    c = (apply_state or {}).get(device_dtype) or self._fallback_apply_state(*device_dtype)
    return {**(apply_state or {}), device_dtype: dict(c, lr_t=c["lr_t"] * k, lr=c["lr"] * k)}

  def _resource_apply_dense(self, grad, var, apply_state=None):
    return super()._resource_apply_dense(grad, var, self._scaled_state(var, apply_state))

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    apply_state = self._scaled_state(var, apply_state)
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


def lr_multipliers(train_config, classifier, encoder):
  """{variable_key: learning-rate multiplier} for train.layer_decay ({} when it is off), from
  a built classifier and its encoder (model.build_classifier)."""
  encoder_names = {v.name for v in encoder.trainable_variables}
  head_names = [v.name for v in classifier.trainable_variables if v.name not in encoder_names]
  return layer_decay_multipliers(train_config.layer_decay, sorted(encoder_names), head_names)


def create_optimizer(train_config, total_steps, policy, lr_multipliers=None):
  """AdamW for a run of total_steps steps.

  Args:
    train_config: config.train (learning_rate, end_learning_rate, warmup_fraction, lr_schedule,
      adam_epsilon, weight_decay, lazy_embeddings).
    total_steps: the steps of the whole run (the schedule decays to end_learning_rate there).
    policy: the mixed-precision policy name; mixed_float16 wraps the optimizer in a
      LossScaleOptimizer (float16 gradients underflow without loss scaling).
    lr_multipliers: {variable_key: multiplier} from lr_multipliers(); None = all x1.
  Returns:
    a tf_keras optimizer; create it under strategy.scope().
  """
  optimizer = AdamW(
      learning_rate=learning_rate_schedule(train_config, total_steps),
      weight_decay_rate=train_config.weight_decay, beta_1=0.9, beta_2=0.999,
      epsilon=train_config.adam_epsilon, exclude_from_weight_decay=NO_WEIGHT_DECAY,
      gradient_clip_norm=0.0,  # the train step clips, after the cross-replica sum
      lazy=train_config.lazy_embeddings, lr_multipliers=lr_multipliers)
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
