"""The run's last step: the serving SavedModel of the final weights, and its W&B artifact."""
import posixpath

import tensorflow as tf
import tf_keras

from bertcore import tokenization
from trainer import checkpointing, distill, export, tracking
from trainer import model as model_lib
from trainer import strategy as strategy_lib
from trainer.plan import EXPORT_DIR
from trainer.progress import say


def export_vocab(plan):
  """The vocab.txt to bundle: the encoder's, else the one preprocessing recorded (if it fits)."""
  if plan.vocab_file:
    return plan.vocab_file
  recorded = plan.manifest.tokenizer_vocab_file
  for path in (recorded, recorded and posixpath.join(plan.data_dir, recorded)):
    if path and tf.io.gfile.exists(path) and tokenization.vocab_sha256(
        tokenization.load_vocab(path)) == plan.manifest.vocab_sha256:
      return path
  return None


def text_encoder_for(plan, vocab_file):
  """The TextEncoder that made the training data: the manifest's casing, max_seq_length and
  truncation, so that the export tokenizes raw text exactly as preprocessing did."""
  m = plan.manifest
  # Chunked data: whole documents up to the stored pieces, which the export cuts into windows.
  return tokenization.TextEncoder(tokenization.load_vocab(vocab_file), m.lower_case is not False,
                                  m.record_length, m.truncation)


# config.export_precision -> the Keras policy the export is traced under.
EXPORT_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def serving_classifier(config, manifest):
  """The run's classifier (a student's too: distill.student_encoder) with untrained weights,
  built under config.export_precision's policy; the global policy is left as it was."""
  policy = tf_keras.mixed_precision.global_policy()
  strategy_lib.set_precision(EXPORT_POLICIES[config.export_precision])
  try:
    encoder = distill.student_encoder(config, manifest) if config.distill.teacher else None
    return model_lib.build_classifier(config, manifest, encoder=encoder)[0]
  finally:
    strategy_lib.set_precision(policy.name)


def serving_model(config, manifest, classifier):
  """The classifier as layers that compute in config.export_precision, holding its weights.

  A mixed-precision run's layers compute in bfloat16 (or float16), and a SavedModel traced from
  them would too, wherever it is served: emulated, slowly, on CPUs without native bfloat16.
  So the export computes in float32 unless config.export_precision=bfloat16 asks for the fast
  path of CPUs that have it (the head and layer norms stay float32 as in training). The weights
  are float32 under every policy, so they copy over unchanged.
  """
  wanted = EXPORT_POLICIES[config.export_precision]
  if classifier.dtype_policy.name == wanted:
    return classifier
  twin = serving_classifier(config, manifest)
  twin.set_weights(classifier.get_weights())
  return twin


def export_again(config, plan, results, chief):
  """A finished run whose export/ was deleted: the weights its final evaluation used (best/,
  else the last checkpoint) exported again by this version. Returns results with export_dir."""
  model_dir = plan.model_dir
  checkpoint = checkpointing.final_checkpoint(model_dir)
  if not checkpoint:
    raise ValueError(f"{model_dir} holds a finished run but no checkpoint to export")
  if not chief or (results["final"].get("validation") or {}).get("error"):
    return results   # the chief alone exports (no collectives); a non-finite run never does
  say(f"{model_dir} holds a finished run without {EXPORT_DIR}/: exporting {checkpoint} again")
  classifier = serving_classifier(config, plan.manifest)
  checkpointing.read_weights(classifier, checkpoint)
  final = dict(results["final"])
  final["export_dir"] = export_trained_model(config, plan, classifier, final, model_dir, chief)
  return dict(results, final=final)


def export_trained_model(config, plan, classifier, final, write_dir, chief):
  """Exports classifier with final["threshold"] and final["temperature"] to <write_dir>/export;
  logs it to W&B.

  Returns the export directory (None on a non-chief worker, or without a vocabulary).
  """
  vocab_file = export_vocab(plan)
  if vocab_file is None:
    say("warning: no export: a random encoder without encoder.vocab_file, and the data's "
        "vocabulary file was not found")
    return None
  text_encoder = text_encoder_for(plan, vocab_file)
  export_dir = posixpath.join(write_dir, EXPORT_DIR)
  for stale in tf.io.gfile.glob(export_dir + ".tmp-*"):  # left by a killed export
    tf.io.gfile.rmtree(stale)
  validation = final.get("validation") or {}
  teacher = distill.lineage(config)  # {} unless the model is a distillation student
  export.export_saved_model(
      serving_model(config, plan.manifest, classifier), text_encoder, list(plan.label_names),
      config.model.head, final["threshold"],
      export_dir, vocab_file, temperature=final.get("temperature", 1.0),
      geometry=plan.geometry, chunk_pooling=config.model.chunk_pooling,
      extra_metadata={"training": {
          "step": final["step"], "best_step": final["best_step"],
          "validation_best_f1": validation.get("best_f1"), "data_dir": plan.data_dir},
          # What the graph cannot do: predict and scoring read this to unescape as training did.
          "input": {"unescape_html": plan.manifest.unescape_html},
          "compute_dtype": config.export_precision, **teacher})
  if not chief:
    checkpointing.remove_dir(export_dir)
    return None
  tracker = tracking.start_run(config, plan.model_dir, "save", chief)
  try:
    tracker.use_dataset(plan.data_dir, plan.manifest)
    tracker.use_teacher(teacher.get("teacher"))
    tracker.log_model(export_dir, f"model-{tracking.dataset_digest(plan.manifest)}",
                      metadata={"head": config.model.head, "labels": list(plan.label_names),
                                "threshold": final["threshold"],
                                "temperature": final.get("temperature", 1.0),
                                "validation_best_f1": validation.get("best_f1"), **teacher})
  finally:
    tracker.finish()
  return export_dir
