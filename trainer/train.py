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
evaluation is finished and is not retrained. SIGTERM (a preemption notice) on any worker makes
every worker save the same checkpoint at the next step or evaluation-call boundary and raise
Preempted (preemption.py); a collective call that waits longer than
config.collective_timeout_seconds for the other workers raises instead of hanging (peers.py).

Steps: an epoch is `train rows // global batch` steps; the record stream repeats, so the few
records still queued in length buckets at an epoch's end start the next one instead of being
dropped. Each input pipeline reads its own shard files (distribute_datasets_from_function).

The pieces: plan.py (checks before building), model.py and optimization.py (built here, under
the strategy's scope), checkpointing.py (run state, checkpoints, best weights), steps.py (the
compiled steps), eval_loop.py (evaluation and results), export_step.py.
"""
import dataclasses
import posixpath
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras

from trainer import calibration, checkpointing, distill, eval_loop, export_step, input_pipeline
from trainer import optimization
from trainer import config as config_lib
from trainer import model as model_lib
from trainer import plan as plan_lib
from trainer import peers, preemption, steps, tracking
from trainer import strategy as strategy_lib
from trainer.checkpointing import TrainingError  # noqa: F401  (raised to trainer.task)
from trainer.preemption import Preempted  # noqa: F401  (raised to trainer.task)
from trainer.progress import Throughput, Window, duration, say


@dataclasses.dataclass
class Run:
  """The built parts of one train_and_evaluate call, shared by the loop's functions."""
  config: object
  plan: plan_lib.RunPlan
  strategy: tf.distribute.Strategy
  chief: bool
  write_dir: str              # model_dir, or a non-chief worker's scratch directory
  state: checkpointing.RunState
  best: checkpointing.BestTracker
  train_step: object          # steps.make_train_step
  eval_step: object           # steps.make_eval_step
  flag: preemption.PreemptionFlag
  timeout: peers.CollectiveTimeout
  results: dict               # what eval_results.json holds
  throughput: Throughput = dataclasses.field(default_factory=Throughput)
  nan_skipped: int = 0
  last_validation: tuple = None   # (step, Evaluated) of the latest epoch-end evaluation
  on_validation: object = None    # train_and_evaluate's hook, see there


def train_and_evaluate(config, data_dir, model_dir, strategy, on_validation=None):
  """Trains, evaluates and exports a classifier.

  Args:
    config: the experiment ConfigDict (trainer.config.default_config() fields).
    data_dir: the preprocessing output (manifest.json + shards).
    model_dir: where checkpoints, results, the export and logs go (local or gs://).
    strategy: a tf.distribute.Strategy (trainer.strategy.build_strategy).
    on_validation: optional on_validation(step, metrics, improved, tracker), called on every
      worker after each epoch-end validation (trainer.objective.Reporter.on_validation).
  Returns:
    the results dict also written to model_dir/eval_results.json, or, when the run stopped
    early at train.stop_at_step, {"stopped_at_step": step, ...}.
  Raises:
    DataError / ValueError: bad data or config, before training starts.
    Preempted: after SIGTERM, once the checkpoint is saved.
    TrainingError: a non-finite loss with nan_policy=stop.
  """
  config = distill.resolve_config(config, model_dir)  # a student: the teacher's encoder, checked
  plan = plan_lib.plan_run(config, data_dir, model_dir, strategy)
  distill.check_fits(config, plan)
  # From here on (input pipelines, config.json) the run's resolved bucket boundaries.
  config = plan_lib.resolved_config(config, plan)
  previous = eval_loop.read_results(plan.model_dir)
  if previous.get("final", {}).get("step") == plan.total_steps:
    say(f"{plan.model_dir} already holds a finished run ({plan.total_steps} steps, final "
        "evaluation done): not retraining. Results: "
        f"{posixpath.join(plan.model_dir, eval_loop.RESULTS_FILE)}")
    if config.export and not tf.io.gfile.exists(posixpath.join(plan.model_dir,
                                                              plan_lib.EXPORT_DIR)):
      return export_step.export_again(config, plan, previous, strategy_lib.is_chief(strategy))
    return previous
  policy = strategy_lib.resolve_precision(config.precision, strategy)
  strategy_lib.set_precision(policy)
  chief = strategy_lib.is_chief(strategy)
  if chief:
    config_lib.write_config(config, plan.model_dir)
  _say_plan(config, plan, strategy, policy)
  # Non-chief workers must take part in saving (MultiWorkerMirroredStrategy) but may not
  # write into model_dir: they save into a local temporary directory, deleted at the end.
  write_dir = plan.model_dir if chief else tempfile.mkdtemp(
      prefix=f"bert-trainer-{strategy_lib.task_name(strategy)}-")
  try:
    teacher = distill.build_teacher(config, plan.manifest, strategy)  # None: no distillation
    state, best = _build_state(config, plan, strategy, policy, write_dir, chief, teacher)
    timeout = peers.CollectiveTimeout(config.collective_timeout_seconds,
                                      strategy_lib.task_name(strategy),
                                      enabled=strategy_lib.is_multi_worker(strategy))
    train_step, eval_step = _build_steps(config, strategy, state, timeout, teacher)
    with preemption.PreemptionFlag(strategy) as flag:
      run = Run(config, plan, strategy, chief, write_dir, state, best, train_step, eval_step,
                flag, timeout, {"epochs": previous.get("epochs", [])},
                on_validation=on_validation)
      tracker = tracking.start_run(config, plan.model_dir, "train", chief)
      tracker.use_dataset(plan.data_dir, plan.manifest)
      tracker.use_teacher(distill.lineage(config).get("teacher"))
      try:
        stopped = train(run, tracker)
      finally:
        tracker.finish()
      if stopped is not None:
        return stopped
      _stop_if_preempted(run)
      final = final_evaluation(run)
      _stop_if_preempted(run)
      final["export_dir"] = _export(run, final)
      return _write_final(run, final)
  finally:
    if not chief:
      checkpointing.remove_dir(write_dir)


def _say_plan(config, plan, strategy, policy):
  replicas = strategy.num_replicas_in_sync
  batch = config.train.global_batch_size
  unlabeled = (f" (of which {plan.unlabeled_rows} unlabeled, from "
               f"{config.distill.unlabeled_dir})" if plan.unlabeled_rows else "")
  say(f"data: {plan.rows['train']} train{unlabeled} / {plan.rows['validation']} validation / "
      f"{plan.rows['test']} test rows, labels {list(plan.labels)}; {plan.steps_per_epoch} "
      f"steps per epoch x {config.train.epochs} epochs = {plan.total_steps} steps of {batch} "
      f"examples ({replicas} replica(s) x {batch // replicas}); precision {policy}")
  g = plan.geometry
  length = g.chunk_length if g else plan.manifest.max_seq_length
  if g:
    say(f"windows: each document read in at most {g.max_chunks} windows of {g.chunk_length} "
        f"ids, overlap {g.chunk_overlap} ({g.max_pieces} word pieces), "
        f"{config.model.chunk_pooling} pooling; a batch is {batch} documents")
  if plan.padding == "longest":
    say(f"batch shapes: each batch padded to its longest row (rows sorted by length in pools "
        f"of {input_pipeline.POOL_BATCHES} batches; at most {length} tokens)")
  if plan.padding == "bucket":
    lengths = input_pipeline.padded_lengths(plan.bucket_boundaries, length)
    origin = {"config": "config.train.bucket_boundaries", "config.json": "the earlier run's "
              "config.json", "manifest": "derived from the manifest's token lengths"}
    say(f"batch shapes: padded to {'/'.join(map(str, lengths))} tokens "
        f"({origin[plan.boundaries_from]})")
  say(f"shuffle: {plan.shuffle_covers}, reshuffled every epoch")
  if plan.order_warning:
    say(plan.order_warning)
  if plan.skipped_shards:
    say(f"warning: skipped {len(plan.skipped_shards)} bad shard(s): "
        f"{[s['file'] for s in plan.skipped_shards]}")


def build_model_and_optimizer(config, manifest, strategy, policy, total_steps, teacher=None):
  """-> (classifier, optimizer), created under strategy.scope() (their variables are
  mirrored); the optimizer has config.train.layer_decay's per-variable multipliers.
  teacher: a distill.Teacher: the classifier is its student (distill.build_student)."""
  with strategy.scope():
    if teacher is not None:
      classifier, encoder = distill.build_student(config, manifest, teacher)
    else:
      classifier, encoder = model_lib.build_classifier(config, manifest)
    optimizer = optimization.create_optimizer(
        config.train, total_steps, policy,
        optimization.lr_multipliers(config.train, classifier, encoder))
  return classifier, optimizer


def _build_state(config, plan, strategy, policy, write_dir, chief, teacher=None):
  """The model, optimizer and counters, restored from model_dir if it holds a checkpoint."""
  # The same seed gives the same initial head / random encoder and dropout masks.
  tf_keras.utils.set_random_seed(config.train.seed)
  classifier, optimizer = build_model_and_optimizer(config, plan.manifest, strategy, policy,
                                                    plan.total_steps, teacher)
  state = checkpointing.create_state(classifier, optimizer, strategy, write_dir,
                                     config.train.keep_checkpoints, scratch=not chief)
  best = checkpointing.BestTracker(state.classifier, strategy, write_dir)
  num_params = int(sum(np.prod(v.shape) for v in state.classifier.trainable_variables))
  say(f"model: {config.encoder.kind} encoder, {config.model.pooling} pooling, "
      f"{config.model.head} head, {num_params:,} trainable parameters")
  if config.train.layer_decay != 1.0:
    inner = getattr(state.optimizer, "inner_optimizer", state.optimizer)  # under loss scaling
    say(optimization.describe_layer_decay(config.train.layer_decay, inner.lr_multipliers))
  plan_lib.check_disk_space(plan.model_dir, config.train.keep_checkpoints, num_params)
  latest = checkpointing.restore_latest(state, plan.model_dir)
  if latest:
    step, spe = int(state.step.numpy()), plan.steps_per_epoch
    where = (f"all {plan.total_steps} steps done" if step >= plan.total_steps else
             f"epoch {step // spe + 1}, {step % spe} of its {spe} steps done")
    say(f"resuming from {latest}: step {step} ({where})")
  best.restore_value(plan.model_dir)
  return state, best


def _build_steps(config, strategy, state, timeout, teacher=None):
  """The compiled training and evaluation steps, each call bounded by the collective timeout."""
  distilling = teacher is not None
  train_step = steps.make_train_step(
      strategy, state.classifier, state.optimizer, state.step, config.train, config.model.head,
      xla=config.xla, teacher=teacher.classifier if distilling else None,
      loss_fn=distill.make_loss(config) if distilling else None)
  eval_step = steps.make_eval_step(strategy, state.classifier, config.model.head)
  return (timeout.wrap(train_step, "a training call"),
          timeout.wrap(eval_step, "an evaluation call"))


def _stop_if_preempted(run):
  """The check outside the training step: every worker calls it at the same points."""
  with run.timeout.bound("a preemption check"):
    preemption.stop_if_requested(run.flag, run.state, run.plan.steps_per_epoch)


def _train_dataset(run, step):
  """The distributed stream of all training batches from `step` to the end."""
  config, plan = run.config, run.plan
  first_epoch, skip_steps = divmod(step, plan.steps_per_epoch)
  src = plan.source("train", config.model)

  def dataset_fn(ctx):
    files = input_pipeline.assign_shards(src.shards, ctx.num_input_pipelines,
                                         ctx.input_pipeline_id)[0]
    say(f"input pipeline {ctx.input_pipeline_id}/{ctx.num_input_pipelines} "
        f"({strategy_lib.task_name(run.strategy)}) reads train shards "
        f"{[posixpath.basename(f) for f in files]}")
    return input_pipeline.train_stream(
        src, config.train, config.data, steps_per_epoch=plan.steps_per_epoch,
        first_epoch=first_epoch, skip_steps=skip_steps, input_context=ctx)
  return run.strategy.distribute_datasets_from_function(dataset_fn)


def train(run, tracker):
  """The epoch loop. Returns a result dict when stopped at train.stop_at_step, else None."""
  config, plan = run.config, run.plan
  spe, total = plan.steps_per_epoch, plan.total_steps
  step = int(run.state.step.numpy())
  writer = _summary_writer(run, "train")
  if step and step % spe == 0 and step // spe not in {e["epoch"] for e in run.results["epochs"]}:
    evaluate_epoch(run, tracker, step // spe, step)  # a restart right at an unevaluated end
  if step >= total:
    return None
  if step % spe:
    say(f"epoch {step // spe + 1}: skipping the {step % spe} batches trained before the "
        "restart")
  iterator = iter(_train_dataset(run, step))
  window = Window()
  while step < total:
    epoch = step // spe
    while step < (epoch + 1) * spe:
      n = steps_this_call(config.train, step, (epoch + 1) * spe - step)
      first, step = step + 1, step + n
      *outputs, preempted = _train_call(run, iterator, n, first)
      window.add(*outputs)
      if step % config.train.log_every_steps < n or step == total:
        _log_progress(run, step, window, writer, tracker)
        window = Window()
      stopped = _after_call(run, step, total, preempted)
      if stopped:
        return stopped
    checkpointing.save(run.state, step, spe)
    evaluate_epoch(run, tracker, epoch + 1, step)
    window.start = time.perf_counter()  # evaluation time is not training time
  return None


def _train_call(run, iterator, n, first_step):
  """Runs n steps and checks their losses: (losses, finites, real, padded, preempted)."""
  preempt = tf.constant(1.0 if run.flag.requested else 0.0)
  try:
    losses, finites, real, padded, flag = run.train_step(iterator, tf.constant(n, tf.int32),
                                                         preempt)
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    raise plan_lib.data_error(run.plan, "train", e) from None
  losses, finites = losses.numpy(), finites.numpy()
  _check_finite(run, losses, finites, first_step)
  return losses, finites, real, padded, float(flag) > 0


def _after_call(run, step, total, preempted):
  """Checkpoints at a preemption, every checkpoint_every_steps and at stop_at_step.

  preempted: some worker had SIGTERM before this call (summed over replicas), so every
  worker stops at this same step; a local flag set during the call waits for the next one.
  """
  train_config = run.config.train
  if preempted:
    preemption.stop(run.state, step, run.plan.steps_per_epoch)
  if train_config.checkpoint_every_steps and step % train_config.checkpoint_every_steps == 0:
    checkpointing.save(run.state, step, run.plan.steps_per_epoch)
  if train_config.stop_at_step and train_config.stop_at_step <= step < total:
    checkpointing.save(run.state, step, run.plan.steps_per_epoch)
    say(f"stopped at step {step} (train.stop_at_step); re-run the same command to continue")
    return {"stopped_at_step": step, "total_steps": total, **run.throughput.summary()}
  return None


def steps_this_call(train_config, step, left_in_epoch):
  """Steps for one train_step call: up to steps_per_execution, stopping at every boundary."""
  n = min(train_config.steps_per_execution, left_in_epoch)
  for every in (train_config.checkpoint_every_steps, train_config.log_every_steps):
    if every:
      n = min(n, every - step % every)
  if train_config.stop_at_step and train_config.stop_at_step > step:
    n = min(n, train_config.stop_at_step - step)
  return max(1, n)


def _check_finite(run, losses, finites, first_step):
  for i in np.flatnonzero(~finites):
    where = f"step {first_step + i} (epoch {(first_step + i - 1) // run.plan.steps_per_epoch + 1})"
    if run.config.train.nan_policy == "stop":
      raise TrainingError(
          f"non-finite loss ({losses[i]}) or gradient at {where}; the update was not applied "
          "and no checkpoint of it was saved. Lower the learning rate or check the data; "
          "--config.train.nan_policy=skip skips such steps instead")
    run.nan_skipped += 1
    say(f"warning: non-finite loss ({losses[i]}) at {where}: update skipped "
        f"(nan_policy=skip, {run.nan_skipped} skipped so far)")


def _log_progress(run, step, window, writer, tracker):
  config, plan = run.config, run.plan
  seconds = max(time.perf_counter() - window.start, 1e-9)
  examples = window.steps * config.train.global_batch_size
  rate = examples / seconds
  left = (plan.total_steps - step) * config.train.global_batch_size / max(rate, 1e-9)
  lr = optimization.current_learning_rate(run.state.optimizer)
  loss, efficiency = window.mean_loss(), window.efficiency()
  if run.chief:
    say(f"step {step}/{plan.total_steps} epoch {(step - 1) // plan.steps_per_epoch + 1}/"
        f"{config.train.epochs} loss {loss:.4f} examples/s {rate:.1f} padding efficiency "
        f"{efficiency:.3f} lr {lr:.3g} eta {duration(left)}")
  metrics = {"train/loss": loss, "train/examples_per_sec": rate,
             "train/padding_efficiency": efficiency, "train/learning_rate": lr}
  with writer.as_default(step=step):
    for k, v in metrics.items():
      tf.summary.scalar(k, v)
  tracker.log(metrics, step=step)
  run.throughput.add(window, examples, seconds)


def _summary_writer(run, name):
  if not run.chief:
    return tf.summary.create_noop_writer()
  return tf.summary.create_file_writer(posixpath.join(run.plan.model_dir, "tensorboard", name))


def _evaluate(run, split, temperature=None):
  return eval_loop.evaluate_split(split, config=run.config, plan=run.plan,
                                  strategy=run.strategy, eval_step=run.eval_step,
                                  between_calls=lambda: _stop_if_preempted(run),
                                  temperature=temperature)


def evaluate_epoch(run, tracker, epoch, step):
  """Validation at an epoch's end: best weights, results, progress line, summaries."""
  evaluated = _evaluate(run, "validation")
  if evaluated is None:
    say(f"epoch {epoch}: no validation rows; the last checkpoint will be exported")
    return
  run.last_validation = (step, evaluated)  # the final evaluation may reuse it
  improved = eval_loop.record_epoch(run.results, epoch, step, evaluated, run.best, run.config)
  summary = eval_loop.summary(evaluated.metrics)
  if run.chief:
    # The uncalibrated scores go to TensorBoard and W&B; the line keeps the calibrated ones.
    say(f"epoch {epoch} validation: " + ", ".join(
        f"{k} {v:.4f}" for k, v in summary.items() if not k.endswith(eval_loop.UNCALIBRATED))
        + (f"  (new best {eval_loop.best_key(run.config)})" if improved else ""))
    eval_loop.write_results(run.plan.model_dir, run.results)
  with _summary_writer(run, "validation").as_default(step=step):
    for k, v in summary.items():
      tf.summary.scalar(f"validation/{k}", v)
  tracker.log({"validation": summary, "epoch": epoch}, step=step)
  if run.on_validation:
    run.on_validation(step, evaluated.metrics, improved, tracker)


def final_evaluation(run):
  """Evaluates the best weights (else the last) on validation and test; returns `final`."""
  config, plan, best = run.config, run.plan, run.best
  step = int(run.state.step.numpy())
  # This process's own best/ first: a non-chief worker must not race the chief's write.
  if best.restore_weights(run.write_dir, plan.model_dir):
    best_step = int(best.step.numpy())
    source = (f"best checkpoint (step {best_step}, validation {eval_loop.best_key(config)} "
              f"{float(best.value.numpy()):.4f})")
  else:
    best_step, source = step, f"last checkpoint (step {step})"
  say(f"final evaluation of the {source}")
  final = {"step": step, "source": source, "total_steps": plan.total_steps,
           "best_step": best_step, "eval_examples_per_sec": {}}
  plots, done = {}, {}
  # The test split is scaled by the temperature fitted on validation (1 without validation).
  temperature = None
  tracker = tracking.start_run(config, plan.model_dir, "evaluate", run.chief)
  try:
    for split in eval_loop.final_splits(config, plan):
      cached = run.last_validation
      if split == "validation" and cached and cached[0] == best_step:
        evaluated = cached[1]  # the same weights were just evaluated at that epoch's end
      else:
        evaluated = _evaluate(run, split, temperature)
      if split == "validation":
        temperature = evaluated.temperature if evaluated else 1.0
        _warn_if_unfit(run, evaluated)
      if evaluated is None:
        continue
      final[split] = evaluated.metrics
      final["eval_examples_per_sec"][split] = eval_loop.examples_per_sec(evaluated)
      if run.chief and "error" not in evaluated.metrics:
        plots.update(eval_loop.save_plots(split, evaluated, config, plan))
        eval_loop.save_outputs(split, evaluated, plan)
        done[split] = evaluated
      tracker.summary({split: {k: v for k, v in evaluated.metrics.items()
                               if isinstance(v, (int, float))}})
      _stop_if_preempted(run)
    if done:
      plots.update(eval_loop.save_reliability_plot(done, config, plan))
      _calibration_summaries(run, done, best_step)
    tracker.log_images(plots)
  finally:
    tracker.finish()
  final["temperature"] = temperature or 1.0
  final["threshold"] = eval_loop.decision_threshold(final.get("validation"), config.model.head)
  final["plots"] = sorted(plots.values())
  final["export_dir"] = None
  return final


def _warn_if_unfit(run, evaluated):
  if run.chief and run.config.eval.calibration == "temperature":
    why = "no validation rows" if evaluated is None else evaluated.unfit
    if why:
      say(f"warning: calibration: temperature kept at 1 ({why}); the exported probabilities "
          "are uncalibrated")


def _calibration_summaries(run, evaluated_by_split, step):
  """The final evaluation's calibration scores (before and after) as TensorBoard scalars."""
  with _summary_writer(run, "final").as_default(step=step):
    for split, evaluated in evaluated_by_split.items():
      for k in ("temperature",) + tuple(
          f"{score}{suffix}" for score in calibration.SCORES
          for suffix in ("", eval_loop.UNCALIBRATED)):
        tf.summary.scalar(f"{split}/{k}", evaluated.metrics[k])


def calibration_line(final):
  """`calibration: T=1.83, validation ECE 0.071 -> 0.018, test ECE 0.066 -> 0.021`."""
  parts = [f"T={final['temperature']:.3g}"]
  for split in ("validation", "test"):
    metrics = final.get(split) or {}
    if isinstance(metrics.get("ece"), float):
      parts.append(f"{split} ECE {metrics['ece' + eval_loop.UNCALIBRATED]:.3f} -> "
                   f"{metrics['ece']:.3f}")
  return "calibration: " + ", ".join(parts)


def _export(run, final):
  """The export step, unless the validation outputs were not finite or export is off."""
  error = (final.get("validation") or {}).get("error")
  if error:
    say(f"warning: not exported: {error} on the validation split")
  elif run.config.export:
    return export_step.export_trained_model(run.config, run.plan, run.state.classifier, final,
                                            run.write_dir, run.chief)
  return None


def _write_final(run, final):
  final.update(run.throughput.summary())
  final["skipped_shards"] = list(run.plan.skipped_shards)
  final["nan_steps_skipped"] = run.nan_skipped
  run.results["final"] = final
  if run.chief:
    eval_loop.write_results(run.plan.model_dir, run.results)
    say("final: " + ", ".join(
        f"{split} {k} {final[split][k]:.4f}" for split in ("validation", "test")
        if split in final for k in ("f1", "best_f1", "pr_auc")
        if isinstance(final[split].get(k), float)))
    say(calibration_line(final))
    say(f"results: {posixpath.join(run.plan.model_dir, eval_loop.RESULTS_FILE)}"
        + (f"; export: {final['export_dir']}" if final["export_dir"] else ""))
  return run.results
