"""train_and_evaluate: the custom tf.distribute training loop, evaluation, checkpoints, export.

The life of a model_dir:
  config.json              the resolved config (a re-run must be compatible with it)
  checkpoints/ckpt-<step>  model + optimizer + step + epoch, every N steps and at epoch ends
  best/ckpt-<step>         the weights with the best validation F1 (with that F1 and step)
  eval_results.json        per-epoch validation metrics, then the final evaluation
  tensorboard/, plots/, export/ (the serving SavedModel), wandb/
Re-running the same command resumes from the latest checkpoint: the step count continues and
the current epoch's data order is rebuilt from its seed, with the batches it already trained
on skipped, so no epoch is repeated or skipped. A run whose eval_results.json holds the final
evaluation is finished and is not retrained. SIGTERM (a preemption notice) makes the loop save
a checkpoint at the next step boundary and raise Preempted.

Steps: an epoch is `train rows // global batch` steps; the record stream repeats, so the few
records still queued in length buckets at an epoch's end start the next one instead of being
dropped. Each input pipeline reads its own shard files (distribute_datasets_from_function).
"""
import math
import os
import posixpath
import shutil
import signal
import threading
import tempfile
import time
import uuid

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging
from official.nlp import optimization

from bertcore import schema, tokenization
from trainer import config as config_lib
from trainer import evaluation, export, input_pipeline, model as model_lib, strategy as strategy_lib
from trainer import faults, tracking

RESULTS_FILE = "eval_results.json"
DUMP_STATE_ENV = "BERTFT_DUMP_STATE_DIR"  # see _dump_state (tests only)
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
EXPORT_DIR = "export"
PLOTS_DIR = "plots"
# Config fields that fix the meaning of a checkpoint or of a step number: a re-run into an
# existing model_dir may not change them (epochs, learning rate, logging, ... may change).
RESUME_FIXED = ("encoder", "model", "train.global_batch_size", "train.seed", "train.padding",
                "train.bucket_boundaries", "train.shuffle_buffer", "train.steps_per_epoch")


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved at `step` and the run should exit non-zero."""

  def __init__(self, step):
    super().__init__(f"preempted: checkpoint saved at step {step}")
    self.step = step


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a non-finite loss with nan_policy=stop)."""


def say(message):
  """A progress line: printed and flushed at once (logs are read live on clusters)."""
  print(message, flush=True)


def train_and_evaluate(config, data_dir, model_dir, strategy):
  """Trains, evaluates and exports a classifier.

  Args:
    config: the experiment ConfigDict (trainer.config.default_config() fields).
    data_dir: the preprocessing output (manifest.json + shards).
    model_dir: where checkpoints, results, the export and logs go (local or gs://).
    strategy: a tf.distribute.Strategy (trainer.strategy.build_strategy).
  Returns:
    the results dict also written to model_dir/eval_results.json, or, when the run stopped
    early at train.stop_at_step, {"stopped_at_step": step, ...}.
  Raises:
    DataError / ValueError: bad data or config, before training starts.
    Preempted: after SIGTERM, once the checkpoint is saved.
    TrainingError: a non-finite loss with nan_policy=stop.
  """
  return _Run(config, data_dir, model_dir, strategy).run()


class _PreemptionFlag:
  """Sets a flag on SIGTERM instead of dying, so the loop can checkpoint first."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    if not self.requested:
      say("SIGTERM received: saving a checkpoint at the next step boundary")
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _Run:
  """One call of train_and_evaluate; splits the long procedure into readable steps."""

  def __init__(self, config, data_dir, model_dir, strategy):
    self.config = config
    self.data_dir = data_dir.rstrip("/")
    self.model_dir = model_dir.rstrip("/")
    self.strategy = strategy
    self.chief = strategy_lib.is_chief(strategy)
    # Non-chief workers must take part in saving (MultiWorkerMirroredStrategy) but may not
    # write into model_dir: they save into a local temporary directory, deleted at the end.
    self.write_dir = (self.model_dir if self.chief else tempfile.mkdtemp(
        prefix=f"bert-trainer-{strategy_lib.task_name(strategy)}-"))
    self.head = config.model.head
    self.results = {}

  # ---------------------------------------------------------------- checks, before building
  def _prepare(self):
    config = self.config
    config_lib.validate(config)
    self.manifest = schema.read_manifest(self.data_dir)
    manifest = self.manifest
    self.labels = list(manifest["labels"])
    if not self.labels:
      raise schema.DataError(f"{self.data_dir} has no labels (the input had no label column): "
                             "it can be used for prediction, not training")
    if manifest.get("multi_label") and self.head != "multilabel":
      raise schema.DataError("the data is multi-label; use --config.model.head=multilabel")
    if self.head == "binary":
      pos = input_pipeline.label_index(self.labels, config.model.positive_label)
      rest = [x for i, x in enumerate(self.labels) if i != pos]
      self.label_names = [rest[0] if len(rest) == 1 else f"not {self.labels[pos]}",
                          self.labels[pos]]
    else:
      self.label_names = self.labels
    if self.head == "multiclass" and config.train.class_weights and (
        len(config.train.class_weights) != len(self.labels)):
      raise ValueError(f"config.train.class_weights has {len(config.train.class_weights)} "
                       f"weights for {len(self.labels)} classes {self.labels}")
    self.vocab_file = model_lib.check_encoder_fits_data(config.encoder, manifest)

    replicas = self.strategy.num_replicas_in_sync
    for name, batch in (("train.global_batch_size", config.train.global_batch_size),
                        ("eval.global_batch_size", config.eval.global_batch_size)):
      if batch % replicas:
        raise ValueError(f"config.{name}={batch} is not divisible by the {replicas} replicas; "
                         f"use a multiple of {replicas} (each replica gets global / {replicas})")
    hosts = getattr(self.strategy.extended, "num_hosts", 1)
    if isinstance(self.strategy, tf.distribute.TPUStrategy) and hosts > 1 and (
        config.train.padding == "bucket"):
      # Each host buckets its own batches, but all TPU cores of a step run one program.
      raise ValueError(f"length bucketing cannot keep the {hosts} TPU hosts' batch shapes "
                       "equal; use --config.train.padding=fixed on a multi-host TPU")
    self._check_model_dir_writable()

    compression = manifest.get("compression")
    self.shards, self.skipped_shards = {}, []
    for split in schema.SPLITS:
      shards = input_pipeline.split_shards(self.data_dir, split, manifest)
      if config.data.verify_shards:
        shards, skipped = input_pipeline.verify_shards(shards, compression,
                                                       config.data.on_corrupt_shard)
        self.skipped_shards += [{"file": p, "problem": why} for p, why in skipped]
      self.shards[split] = shards
    self.rows = {s: self._rows(s) for s in schema.SPLITS}
    self.steps_per_epoch = (config.train.steps_per_epoch or input_pipeline.steps_per_epoch(
        self.rows["train"], config.train.global_batch_size))
    self.total_steps = self.steps_per_epoch * config.train.epochs
    self._check_resume_compatible()

  def _rows(self, split):
    shards = self.shards[split]
    if all(r is not None for _, r in shards):
      return sum(r for _, r in shards)
    return int(self.manifest["splits"][split]["rows"])

  def _check_model_dir_writable(self):
    probe = posixpath.join(self.model_dir, f".write-test-{uuid.uuid4().hex[:8]}")
    try:
      tf.io.gfile.makedirs(self.model_dir)
      with tf.io.gfile.GFile(probe, "w") as f:
        f.write("ok")
      tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as e:
      message = getattr(e, "message", None) or str(e)
      raise ValueError(f"model_dir {self.model_dir} is not writable: "
                       f"{message.splitlines()[0]}") from None

  def _check_disk_space(self, num_params):
    """One clear error when the checkpoints, the best weights and the export cannot fit."""
    if "://" in self.model_dir:
      return
    free = shutil.disk_usage(self.model_dir).free
    # A checkpoint holds the weights and Adam's two slots, and keep_checkpoints + 1 of them
    # exist while a new one is written; best/ and export/ hold the weights, the export also
    # its graph (a few MB whatever the model size). What an earlier run of this model_dir
    # left there is replaced as the run goes on, so it counts as available.
    checkpoint = num_params * 4 * 3
    total = (checkpoint * (self.config.train.keep_checkpoints + 1) + num_params * 4 * 2
             + 16 * 2**20)
    used = sum(os.path.getsize(os.path.join(root, name))
               for sub in (CHECKPOINT_DIR, BEST_DIR, EXPORT_DIR)
               for root, _, names in os.walk(os.path.join(self.model_dir, sub))
               for name in names)
    need = max(total - used, checkpoint)
    if free < need:
      raise ValueError(f"not enough disk space in {self.model_dir}: "
                       f"{self.config.train.keep_checkpoints} checkpoints (+1 while saving), "
                       f"the best weights and the export need about {need / 1e6:.1f} MB more, "
                       f"{free / 1e6:.1f} MB are free")

  def _check_resume_compatible(self):
    previous = config_lib.read_config_json(self.model_dir)
    if previous is None:
      return
    current = config_lib.to_dict(self.config)
    changed = []
    for key in RESUME_FIXED:
      a, b = previous, current
      for part in key.split("."):
        a, b = (a or {}).get(part), (b or {}).get(part)
      if _normalise(a) != _normalise(b):
        changed.append(key)
    if changed and tf.io.gfile.exists(posixpath.join(self.model_dir, CHECKPOINT_DIR)):
      raise ValueError(f"{self.model_dir} holds a run with a different "
                       f"{', '.join(changed)}; resuming it would mix two experiments. Use a "
                       "new --model_dir (or restore the old values)")

  # ------------------------------------------------------------------------- the whole run
  def run(self):
    self._prepare()
    previous = _read_results(self.model_dir)
    if previous.get("final", {}).get("step") == self.total_steps:
      say(f"{self.model_dir} already holds a finished run ({self.total_steps} steps, "
          f"final evaluation and export done): not retraining. Results: "
          f"{posixpath.join(self.model_dir, RESULTS_FILE)}")
      return previous
    self.results = {"epochs": previous.get("epochs", [])}

    policy = strategy_lib.resolve_precision(self.config.precision, self.strategy)
    strategy_lib.set_precision(policy)
    self.policy = policy
    if self.chief:
      config_lib.write_config(self.config, self.model_dir)
    replicas = self.strategy.num_replicas_in_sync
    say(f"data: {self.rows['train']} train / {self.rows['validation']} validation / "
        f"{self.rows['test']} test rows, labels {self.labels}; {self.steps_per_epoch} steps per "
        f"epoch x {self.config.train.epochs} epochs = {self.total_steps} steps of "
        f"{self.config.train.global_batch_size} examples ({replicas} replica(s) x "
        f"{self.config.train.global_batch_size // replicas}); precision {policy}")
    if self.skipped_shards:
      say(f"warning: skipped {len(self.skipped_shards)} bad shard(s): "
          f"{[s['file'] for s in self.skipped_shards]}")

    self._build()
    try:
      with _PreemptionFlag() as self.preemption:
        self.tracker = tracking.start_run(self.config, self.model_dir, "train", self.chief)
        self.tracker.use_dataset(self.data_dir, self.manifest)
        try:
          stopped = self._train()
        finally:
          self.tracker.finish()
        if stopped is not None:
          return stopped
        self._raise_if_preempted()
        return self._finish()
    finally:
      self._clean_worker_dir(everything=True)

  # ----------------------------------------------------------------------------- building
  def _build(self):
    config = self.config
    # The same seed gives the same initial head / random encoder and dropout masks.
    tf_keras.utils.set_random_seed(config.train.seed)
    with self.strategy.scope():
      self.classifier, _ = model_lib.build_classifier(config, self.manifest)
      optimizer = optimization.create_optimizer(
          config.train.learning_rate, self.total_steps,
          int(config.train.warmup_fraction * self.total_steps),
          end_lr=config.train.end_learning_rate, optimizer_type="adamw")
      optimizer.weight_decay_rate = config.train.weight_decay
      optimizer.gradient_clip_norm = 0.0  # clipped here, after the cross-replica sum
      if self.policy == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch",
                               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.best_value = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_value",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step",
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    num_params = int(sum(np.prod(v.shape) for v in self.classifier.trainable_variables))
    say(f"model: {config.encoder.kind} encoder, {config.model.pooling} pooling, {self.head} "
        f"head, {num_params:,} trainable parameters")
    self._check_disk_space(num_params)

    self.checkpoint = tf.train.Checkpoint(model=self.classifier, optimizer=self.optimizer,
                                          step=self.global_step, epoch=self.epoch)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, posixpath.join(self.write_dir, CHECKPOINT_DIR),
        max_to_keep=config.train.keep_checkpoints, step_counter=self.global_step)
    self.best_checkpoint = tf.train.Checkpoint(model=self.classifier, value=self.best_value,
                                               step=self.best_step)
    self.best_manager = tf.train.CheckpointManager(
        self.best_checkpoint, posixpath.join(self.write_dir, BEST_DIR), max_to_keep=1)
    latest = tf.train.latest_checkpoint(posixpath.join(self.model_dir, CHECKPOINT_DIR))
    if latest:
      # expect_partial: Adam's slots are restored when first created; a resume with no step
      # left never creates them, and TF would warn about them at exit.
      self.checkpoint.restore(latest).assert_existing_objects_matched().expect_partial()
      step = int(self.global_step.numpy())
      where = (f"all {self.total_steps} steps done" if step >= self.total_steps else
               f"epoch {step // self.steps_per_epoch + 1}, {step % self.steps_per_epoch} of its "
               f"{self.steps_per_epoch} steps done")
      say(f"resuming from {latest}: step {step} ({where})")
    best = tf.train.latest_checkpoint(posixpath.join(self.model_dir, BEST_DIR))
    if best:
      reader = tf.train.load_checkpoint(best)
      self.best_value.assign(reader.get_tensor("value/.ATTRIBUTES/VARIABLE_VALUE"))
      self.best_step.assign(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    self.last_saved_step = int(self.global_step.numpy()) if latest else -1
    self.train_fn = self._make_train_fn()
    self.eval_fn = self._make_eval_fn()

  def _make_train_fn(self):
    strategy, classifier, optimizer = self.strategy, self.classifier, self.optimizer
    config, head = self.config, self.head
    loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    global_batch = float(config.train.global_batch_size)
    class_weights = list(config.train.class_weights) or None
    clip_norm = config.train.clip_norm
    tvars = classifier.trainable_variables
    sum_op = tf.distribute.ReduceOp.SUM

    def forward_backward(features, labels):
      with tf.GradientTape() as tape:
        logits = classifier(features, training=True)                  # float32 [b, K]
        per_example = model_lib.per_example_loss(labels, logits, head, config.train.pos_weight,
                                                 class_weights)
        # Divide by the GLOBAL batch: the cross-replica sum of gradients is then the mean.
        loss = tf.reduce_sum(per_example) / global_batch
        scaled = optimizer.get_scaled_loss(loss) if loss_scaled else loss
      # None for variables the loss does not use (the pooler under mean pooling).
      return loss, tape.gradient(scaled, tvars)

    if config.xla:
      forward_backward = tf.function(forward_backward, jit_compile=True)

    def apply_if(grads, tvars, finite):
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

    def replica_step(batch, preempt):
      features = {k: batch[k] for k in model_lib.INPUT_KEYS}
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
      grads = ctx.all_reduce(sum_op, grads)
      loss = ctx.all_reduce(sum_op, loss)
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
        apply_if(grads, used_vars, finite)
      mask = tf.cast(features["input_mask"], tf.float32)
      real = ctx.all_reduce(sum_op, tf.reduce_sum(mask))
      padded = ctx.all_reduce(sum_op, tf.cast(tf.size(mask), tf.float32))
      # Any worker's SIGTERM reaches all workers at the same step, so they save together.
      # (identity: a tensor of this replica; the same input object on every replica would be
      # regrouped into one value that all_reduce cannot place.)
      flag = ctx.all_reduce(sum_op, tf.identity(preempt))
      return loss, finite, real, padded, flag

    @tf.function
    def train_fn(iterator, num_steps, preempt):
      """Runs num_steps steps; returns per-step losses and finiteness, token counts, flag."""
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
        self.global_step.assign_add(1)
      return losses.stack(), finites.stack(), real, padded, flag

    return train_fn

  def _make_eval_fn(self):
    strategy, classifier, head = self.strategy, self.classifier, self.head

    def replica_step(batch):
      features = {k: batch[k] for k in model_lib.INPUT_KEYS}
      logits = classifier(features, training=False)
      return {"probs": model_lib.probabilities(logits, head), "labels": batch["labels"],
              "weights": batch["weights"],
              "loss": model_lib.per_example_loss(batch["labels"], logits, head)}

    @tf.function
    def eval_fn(iterator):
      outputs = strategy.run(replica_step, args=(next(iterator),))
      # Every worker gets every replica's rows (pipelines are padded to equal batch counts).
      return {k: strategy.gather(v, axis=0) for k, v in outputs.items()}

    return eval_fn

  # ----------------------------------------------------------------------------- training
  def _train_dataset(self, step):
    """The distributed stream of all training batches from `step` to the end."""
    config = self.config
    first_epoch, skip_steps = divmod(step, self.steps_per_epoch)

    def dataset_fn(ctx):
      files = input_pipeline.assign_shards(self.shards["train"], ctx.num_input_pipelines,
                                           ctx.input_pipeline_id)[0]
      say(f"input pipeline {ctx.input_pipeline_id}/{ctx.num_input_pipelines} "
          f"({strategy_lib.task_name(self.strategy)}) reads train shards "
          f"{[posixpath.basename(f) for f in files]}")
      return input_pipeline.make_train_stream(
          self.data_dir, config.train.global_batch_size, steps_per_epoch=self.steps_per_epoch,
          first_epoch=first_epoch, num_epochs=config.train.epochs, skip_steps=skip_steps,
          input_context=ctx, manifest=self.manifest, head=self.head, shards=self.shards["train"],
          positive_label=config.model.positive_label, padding=config.train.padding,
          bucket_boundaries=config.train.bucket_boundaries,
          shuffle_buffer=config.train.shuffle_buffer, seed=config.train.seed,
          cycle_length=config.data.cycle_length)
    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def _train(self):
    """The epoch loop. Returns a result dict when stopped at train.stop_at_step, else None."""
    config = self.config
    spe, total = self.steps_per_epoch, self.total_steps
    step = int(self.global_step.numpy())
    writer = self._summary_writer("train")
    self.nan_skipped = 0
    self._evaluate_pending_epoch(step)
    window = {"steps": 0, "finite_steps": 0, "loss": 0.0, "real": 0.0, "padded": 0.0,
              "time": time.perf_counter()}
    self.throughput = {"real": 0.0, "padded": 0.0, "examples": 0, "seconds": 0.0}
    if step >= total:
      return None
    if step % spe:
      say(f"epoch {step // spe + 1}: skipping the {step % spe} batches trained before the "
          "restart")
    iterator = iter(self._train_dataset(step))
    while step < total:
      epoch, done_in_epoch = divmod(step, spe)
      while done_in_epoch < spe:
        n = self._steps_this_call(step, spe - done_in_epoch)
        try:
          losses, finites, real, padded, flag = self.train_fn(
              iterator, tf.constant(n, tf.int32),
              tf.constant(1.0 if self.preemption.requested else 0.0))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
          self._raise_data_error("train", e)
        faults.maybe_crash("train_step")  # tests only (trainer/faults.py); off by default
        first = step + 1
        step += n
        done_in_epoch += n
        self._check_finite(losses.numpy(), finites.numpy(), first)
        finite_losses = losses.numpy()[finites.numpy()]
        window["steps"] += n
        window["finite_steps"] += len(finite_losses)
        window["loss"] += float(finite_losses.sum())
        window["real"] += float(real)
        window["padded"] += float(padded)
        if step % config.train.log_every_steps < n or step == total:
          self._log_progress(step, window, writer)
        if float(flag) > 0:
          self._save(step)
          say(f"preempted: checkpoint saved at step {step}")
          raise Preempted(step)
        if config.train.checkpoint_every_steps and (
            step % config.train.checkpoint_every_steps == 0):
          self._save(step)
        if config.train.stop_at_step and step >= config.train.stop_at_step and step < total:
          self._save(step)
          say(f"stopped at step {step} (train.stop_at_step); re-run the same command to "
              "continue")
          return {"stopped_at_step": step, "total_steps": total, **self._throughput()}
      self._save(step)
      self._evaluate_epoch(epoch + 1, step)
      window["time"] = time.perf_counter()  # evaluation time is not training time
    _dump_state(self.checkpoint, self.strategy)  # tests only (see _dump_state); off by default
    return None

  def _throughput(self):
    """Steady-state training examples/s and padding efficiency of this process's run."""
    t = getattr(self, "throughput", None)
    if not t or not t["seconds"]:
      return {}
    return {"train_examples_per_sec": t["examples"] / t["seconds"],
            "train_padding_efficiency": t["real"] / max(t["padded"], 1.0)}

  def _steps_this_call(self, step, left_in_epoch):
    """Steps for one train_fn call: up to steps_per_execution, stopping at every boundary."""
    config = self.config
    n = min(config.train.steps_per_execution, left_in_epoch)
    for every in (config.train.checkpoint_every_steps, config.train.log_every_steps):
      if every:
        n = min(n, every - step % every)
    if config.train.stop_at_step and config.train.stop_at_step > step:
      n = min(n, config.train.stop_at_step - step)
    return max(1, n)

  def _check_finite(self, losses, finites, first_step):
    for i, ok in enumerate(finites):
      if ok:
        continue
      where = f"step {first_step + i} (epoch {(first_step + i - 1) // self.steps_per_epoch + 1})"
      if self.config.train.nan_policy == "stop":
        raise TrainingError(
            f"non-finite loss ({losses[i]}) or gradient at {where}; the update was not applied "
            "and no checkpoint of it was saved. Lower the learning rate or check the data; "
            "--config.train.nan_policy=skip skips such steps instead")
      self.nan_skipped += 1
      say(f"warning: non-finite loss ({losses[i]}) at {where}: update skipped "
          f"(nan_policy=skip, {self.nan_skipped} skipped so far)")

  def _log_progress(self, step, window, writer):
    now = time.perf_counter()
    seconds = max(now - window["time"], 1e-9)
    examples = window["steps"] * self.config.train.global_batch_size
    rate = examples / seconds
    loss = (window["loss"] / window["finite_steps"]) if window["finite_steps"] else float("nan")
    efficiency = window["real"] / max(window["padded"], 1.0)
    left = (self.total_steps - step) * self.config.train.global_batch_size / max(rate, 1e-9)
    lr = self._learning_rate()
    if self.chief:
      say(f"step {step}/{self.total_steps} epoch {(step - 1) // self.steps_per_epoch + 1}/"
          f"{self.config.train.epochs} loss {loss:.4f} examples/s {rate:.1f} padding efficiency "
          f"{efficiency:.3f} lr {lr:.3g} eta {_duration(left)}")
    metrics = {"train/loss": loss, "train/examples_per_sec": rate,
               "train/padding_efficiency": efficiency, "train/learning_rate": lr}
    with writer.as_default(step=step):
      for k, v in metrics.items():
        tf.summary.scalar(k, v)
    self.tracker.log(metrics, step=step)
    t = self.throughput
    if t.get("warm"):  # the first window holds tracing and compilation: not throughput
      t["real"] += window["real"]
      t["padded"] += window["padded"]
      t["examples"] += examples
      t["seconds"] += seconds
    t["warm"] = True
    window.update(steps=0, finite_steps=0, loss=0.0, real=0.0, padded=0.0, time=now)

  def _learning_rate(self):
    optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
    lr = optimizer.learning_rate
    if callable(lr):
      lr = lr(optimizer.iterations)
    return float(lr.numpy()) if hasattr(lr, "numpy") else float(lr)

  def _save(self, step):
    if step == self.last_saved_step:
      return
    self.epoch.assign(step // self.steps_per_epoch)  # epochs completed at this step
    try:
      # Written under temporary names; the `checkpoint` state file is replaced atomically
      # last, so a checkpoint cut short by a crash never becomes the latest.
      self.manager.save(checkpoint_number=step,
                        options=faults.checkpoint_options("checkpoint_write"))
    except (tf.errors.OpError, OSError) as e:
      raise TrainingError(f"could not save the checkpoint of step {step} in "
                          f"{self.manager.directory}: {input_pipeline.error_line(e)}") from None
    self.last_saved_step = step
    self._clean_worker_dir()

  def _clean_worker_dir(self, everything=False):
    """Deletes what a non-chief worker saved (its copy of best/ stays until the end)."""
    if self.chief:
      return
    for sub in ([""] if everything else [CHECKPOINT_DIR, EXPORT_DIR]):
      path = posixpath.join(self.write_dir, sub).rstrip("/")
      if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)

  def _summary_writer(self, name):
    if not self.chief:
      return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(posixpath.join(self.model_dir, "tensorboard", name))

  def _raise_if_preempted(self):
    if self.preemption.requested:
      step = int(self.global_step.numpy())
      self._save(step)
      say(f"preempted: checkpoint saved at step {step}")
      raise Preempted(step)

  def _raise_data_error(self, split, error):
    found = input_pipeline.find_corrupt_shard(self.shards[split],
                                              self.manifest.get("compression"))
    if found:
      raise schema.DataError(f"shard {found[0]} is corrupt ({found[1]}); re-run preprocessing, "
                             "or set --config.data.on_corrupt_shard=skip") from None
    raise error

  # --------------------------------------------------------------------------- evaluation
  def _evaluate(self, split):
    """Predictions and metrics on a split: (metrics, labels, probs), or None if it is empty."""
    if self.rows[split] == 0:
      return None
    config = self.config
    pipelines = []

    def dataset_fn(ctx):
      pipelines.append(ctx.num_input_pipelines)
      return input_pipeline.make_dataset(
          self.data_dir, split, config.eval.global_batch_size, manifest=self.manifest,
          head=self.head, training=False, input_context=ctx, shards=self.shards[split],
          positive_label=config.model.positive_label, padding=config.train.padding,
          bucket_boundaries=config.train.bucket_boundaries,
          cycle_length=config.data.cycle_length)
    dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
    steps = input_pipeline.eval_steps(self.shards[split], pipelines[0],
                                      config.eval.global_batch_size,
                                      self.strategy.num_replicas_in_sync)
    iterator = iter(dataset)
    parts = []
    for _ in range(steps):
      if self.preemption.requested:
        self._raise_if_preempted()
      try:
        parts.append({k: v.numpy() for k, v in self.eval_fn(iterator).items()})
      except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        self._raise_data_error(split, e)
      faults.maybe_crash("evaluation")
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = out["weights"] > 0
    labels, probs = out["labels"][keep], out["probs"][keep]
    if keep.sum() != self.rows[split]:
      logging.warning("%s: evaluated %d rows, the manifest says %d", split, keep.sum(),
                      self.rows[split])
    loss = float(np.mean(out["loss"][keep]))
    if self.head == "binary":
      labels = labels[:, 0]
    labels = labels.astype(np.int64)
    if not np.isfinite(probs).all() or not math.isfinite(loss):
      return ({"loss": None, "num_examples": int(keep.sum()),
               "error": "the model produced non-finite outputs"}, labels, probs)
    metrics = evaluation.compute_metrics(labels, probs, self.head, self.label_names, loss=loss)
    return metrics, labels, probs

  def _best_key(self):
    key = self.config.eval.best_metric
    return "best_f1" if key == "auto" else key

  def _evaluate_pending_epoch(self, step):
    """After a restart right at an epoch end: evaluate that epoch if it never was."""
    epoch, rest = divmod(step, self.steps_per_epoch)
    if step and rest == 0 and epoch not in {e["epoch"] for e in self.results["epochs"]}:
      self._evaluate_epoch(epoch, step)

  def _evaluate_epoch(self, epoch, step):
    evaluated = self._evaluate("validation")
    if evaluated is None:
      say(f"epoch {epoch}: no validation rows; the last checkpoint will be exported")
      return
    self._last_validation = (step, evaluated)  # the final evaluation may reuse it
    metrics = evaluated[0]
    key = self._best_key()
    value = metrics.get(key)
    improved = value is not None and math.isfinite(value) and value > float(
        self.best_value.numpy())
    if improved:
      self.best_value.assign(value)
      self.best_step.assign(step)
      self.best_manager.save(checkpoint_number=step,
                             options=faults.checkpoint_options("best_checkpoint_write"))
    summary = {k: metrics.get(k) for k in ("loss", "accuracy", "precision", "recall", "f1",
                                           "pr_auc", "roc_auc", "best_threshold", "best_f1")}
    if self.chief:
      say(f"epoch {epoch} validation: " + ", ".join(
          f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float)) +
          (f"  (new best {key})" if improved else ""))
    self.results["epochs"] = [e for e in self.results["epochs"] if e["epoch"] != epoch] + [
        {"epoch": epoch, "step": step, "validation": metrics, "best": bool(improved)}]
    self._write_results()
    with self._summary_writer("validation").as_default(step=step):
      for k, v in summary.items():
        if isinstance(v, float):
          tf.summary.scalar(f"validation/{k}", v)
    self.tracker.log({"validation": summary, "epoch": epoch}, step=step)

  def _write_results(self):
    if self.chief:
      config_lib.write_json_atomic(posixpath.join(self.model_dir, RESULTS_FILE), self.results)

  # -------------------------------------------------------------- final evaluation, export
  def _finish(self):
    config = self.config
    step = int(self.global_step.numpy())
    # This process's own best/ first: a non-chief worker must not race the chief's write.
    best = (tf.train.latest_checkpoint(posixpath.join(self.write_dir, BEST_DIR))
            or tf.train.latest_checkpoint(posixpath.join(self.model_dir, BEST_DIR)))
    if best:
      self.best_checkpoint.read(best).assert_existing_objects_matched().expect_partial()
      source = f"best checkpoint (step {int(self.best_step.numpy())}, validation " \
               f"{self._best_key()} {float(self.best_value.numpy()):.4f})"
    else:
      source = f"last checkpoint (step {step})"
    say(f"final evaluation of the {source}")
    tracker = tracking.start_run(config, self.model_dir, "evaluate", self.chief)
    final = {"step": step, "source": source, "total_steps": self.total_steps,
             "best_step": int(self.best_step.numpy()) if best else step}
    plots = {}
    try:
      for split in ("validation", "test"):
        if split == "test" and not (config.eval.test_split and self._labelled(split)):
          continue
        cached = getattr(self, "_last_validation", None)
        if split == "validation" and cached and cached[0] == final["best_step"]:
          evaluated = cached[1]  # the same weights were just evaluated at that epoch's end
        else:
          evaluated = self._evaluate(split)
        if evaluated is None:
          continue
        metrics, labels, probs = evaluated
        final[split] = metrics
        if self.chief and "error" not in metrics:
          out_dir = posixpath.join(self.model_dir, PLOTS_DIR, split)
          for path in evaluation.save_plots(labels, probs, self.head, self.label_names,
                                            out_dir):
            plots[f"{split}/{posixpath.splitext(posixpath.basename(path))[0]}"] = path
        tracker.summary({split: {k: v for k, v in metrics.items()
                                 if isinstance(v, (int, float))}})
        self._raise_if_preempted()
      tracker.log_images(plots)
    finally:
      tracker.finish()
    validation = final.get("validation") or {}
    threshold = validation.get("best_threshold")
    if threshold is None and self.head != "multiclass":
      threshold = evaluation.DEFAULT_THRESHOLD
    final["threshold"] = threshold
    final["plots"] = sorted(plots.values())
    final["export_dir"] = None
    if "error" in validation:
      say(f"warning: not exported: {validation['error']} on the validation split")
    elif config.export:
      final["export_dir"] = self._export(threshold, final)
    final.update(self._throughput())
    final["skipped_shards"] = self.skipped_shards
    final["nan_steps_skipped"] = self.nan_skipped
    self.results["final"] = final
    self._write_results()
    if self.chief:
      say("final: " + ", ".join(
          f"{split} {k} {final[split][k]:.4f}" for split in ("validation", "test")
          if split in final for k in ("f1", "best_f1", "pr_auc")
          if isinstance(final[split].get(k), float)))
      say(f"results: {posixpath.join(self.model_dir, RESULTS_FILE)}"
          + (f"; export: {final['export_dir']}" if final["export_dir"] else ""))
    return self.results

  def _labelled(self, split):
    histogram = self.manifest["splits"].get(split, {}).get("label_histogram") or {}
    return sum(histogram.values()) > 0

  def _export_vocab(self):
    """The vocab.txt to bundle: the encoder's, else the one preprocessing recorded (if it fits)."""
    if self.vocab_file:
      return self.vocab_file
    recorded = (self.manifest.get("tokenizer") or {}).get("vocab_file")
    for path in (recorded, recorded and posixpath.join(self.data_dir, recorded)):
      if path and tf.io.gfile.exists(path) and tokenization.vocab_sha256(
          tokenization.load_vocab(path)) == self.manifest["vocab_sha256"]:
        return path
    return None

  def _export(self, threshold, final):
    vocab_file = self._export_vocab()
    if vocab_file is None:
      say("warning: no export: a random encoder without encoder.vocab_file, and the data's "
          "vocabulary file was not found")
      return None
    text_encoder = tokenization.TextEncoder(tokenization.load_vocab(vocab_file),
                                            self.manifest.get("lower_case", True),
                                            self.manifest["max_seq_length"])
    export_dir = posixpath.join(self.write_dir, EXPORT_DIR)
    for stale in tf.io.gfile.glob(export_dir + ".tmp-*"):  # left by a killed export
      tf.io.gfile.rmtree(stale)
    validation = final.get("validation") or {}
    export.export_saved_model(
        self.classifier, text_encoder, self.label_names, self.head, threshold, export_dir,
        vocab_file, extra_metadata={"training": {
            "step": final["step"], "best_step": final["best_step"],
            "validation_best_f1": validation.get("best_f1"),
            "data_dir": self.data_dir}})
    self._clean_worker_dir()
    if not self.chief:
      return None
    tracker = tracking.start_run(self.config, self.model_dir, "save", self.chief)
    try:
      tracker.use_dataset(self.data_dir, self.manifest)
      tracker.log_model(export_dir, f"model-{tracking.dataset_digest(self.manifest)}",
                        metadata={"head": self.head, "labels": self.label_names,
                                  "threshold": threshold,
                                  "validation_best_f1": validation.get("best_f1")})
    finally:
      tracker.finish()
    return export_dir


def _dump_state(checkpoint, strategy):
  """Test hook: with $BERTFT_DUMP_STATE_DIR set, every process, chief or not, writes its state
  at the end of training (model, optimizer, step) to <dir>/<task name>/state-1, so a test can
  compare the workers of a multi-worker run (a non-chief deletes its own checkpoints)."""
  out = os.environ.get(DUMP_STATE_ENV)
  if out:
    checkpoint.write(posixpath.join(out, strategy_lib.task_name(strategy), "state-1"))


def _read_results(model_dir):
  path = posixpath.join(model_dir, RESULTS_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  import json
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _normalise(value):
  if isinstance(value, (list, tuple)):
    return [_normalise(v) for v in value]
  if isinstance(value, dict):
    return {k: _normalise(v) for k, v in value.items()}
  return value


def _duration(seconds):
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
