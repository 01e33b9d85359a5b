"""Exports a trained classifier as a SavedModel that serves raw text.

The SavedModel tokenizes in-graph with the same `bertcore.tokenization.TextEncoder` that the
preprocessing job used (same vocabulary, lower-casing and truncation), so serving needs no
Python preprocessing. Loading it needs only TensorFlow and `import tensorflow_text` (for the
tokenizer ops); no Keras, no Model Garden, no code from this package.

Signatures (batch size dynamic; padding is to the longest row of each batch):
  serving_default   inputs  text       string [batch]
  serve_text_pair   inputs  text       string [batch]
                            text_pair  string [batch]
  serve_examples    inputs  examples   string [batch], serialized tf.Example in the
                                       bertcore.schema format (input_ids, type_ids, ...)
  outputs, all three:
    probabilities   float32  binary: [batch], P(label 1) (the `compute_metrics` convention);
                             multiclass: [batch, C] softmax; multilabel: [batch, C] sigmoids;
                             all of logits / temperature (trainer/calibration.py)
    label_id        int64    binary: [batch] 0/1 from `probability >= threshold`;
                             multiclass: [batch] argmax; multilabel: [batch, C] multi-hot from
                             `probability >= threshold`
    label           string   binary/multiclass: [batch] class name of label_id; multilabel:
                             [batch] the names of the predicted labels joined with "|" in
                             label order ("" when none passes the threshold)
  serve_examples also returns example_id string [batch], copied from the records.

Inside the export:
  assets/vocab.txt       a byte copy of the vocabulary (tracked as the `vocab_file` Asset)
  assets/metadata.json   head, labels, threshold, temperature, max_seq_length, truncation,
                         lower_case, vocab hash, ...
  and the same values as non-trainable variables on the loaded object
  (`loaded.labels`, `loaded.head`, `loaded.threshold`, `loaded.temperature`,
  `loaded.max_seq_length`, `loaded.truncation`, `loaded.lower_case`).
An export made before temperature scaling has no `temperature` (metadata or variable): its
probabilities are of T = 1 (serving.export_info.temperature reads it so).
"""
import posixpath
import shutil
import tempfile
import uuid

import tensorflow as tf
from absl import logging

import bertcore
from bertcore import files
from bertcore import names
from bertcore import schema
from bertcore import tokenization
from bertcore import windows
from serving import export_info
from trainer import model as model_lib

# What serving reads back (serving.export_info: read_metadata, WordPieceCounter) is named there.
VOCAB_ASSET = export_info.VOCAB_ASSET
METADATA_ASSET = export_info.METADATA_ASSET
SIGNATURES = export_info.SIGNATURES
DOCUMENT_SIGNATURES = tuple(x for x in SIGNATURES if x != "serve_text_pair")
SAVED_MODEL_PB = export_info.SAVED_MODEL_PB
METADATA_FORMAT = 1
MULTILABEL_SEPARATOR = "|"


class ServingModule(tf.Module):
  """The object that is saved: tokenization + classifier + head, as tf.functions."""

  def __init__(self, classifier, text_encoder, labels, head, threshold, vocab_path,
               metadata_path, temperature=1.0, geometry=None):
    super().__init__(name="bert_text_classifier")
    # Track the classifier's variables, not the Keras model: a Keras model inside the module
    # would make the SavedModel writer trace and store Keras' own call graphs as well (slow,
    # and serving does not use them). The functions below capture these variables.
    self._classifier_variables = list(classifier.variables)
    self._call_classifier = lambda features: classifier(features, training=False)
    self._encode = text_encoder.encode
    self._pad_id = text_encoder.pad_id
    self._head_name = head
    self._label_names = list(labels)
    self._threshold_value = float(threshold) if head != "multiclass" else None
    self._max_seq_length_value = text_encoder.max_seq_length
    self._temperature_value = float(temperature)
    self._geometry = geometry  # windows.Geometry: documents read in windows (or None)
    # For introspection after tf.saved_model.load (the functions use the constants above).
    self.labels = tf.Variable(self._label_names, trainable=False, name="labels")
    self.head = tf.Variable(head, trainable=False, name="head")
    self.threshold = tf.Variable(
        float("nan") if self._threshold_value is None else self._threshold_value,
        dtype=tf.float32, trainable=False, name="threshold")
    self.temperature = tf.Variable(self._temperature_value, dtype=tf.float32, trainable=False,
                                   name="temperature")
    self.max_seq_length = tf.Variable(text_encoder.max_seq_length, dtype=tf.int64,
                                      trainable=False, name="max_seq_length")
    self.truncation = tf.Variable(text_encoder.truncation, trainable=False, name="truncation")
    self.lower_case = tf.Variable(text_encoder.lower_case, trainable=False, name="lower_case")
    self.vocab_file = tf.saved_model.Asset(vocab_path)
    self.metadata_file = tf.saved_model.Asset(metadata_path)

  # autograph=False: nothing here branches on tensors, and converting the whole encoder's
  # Python to graph code doubled the export time.
  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def serve_text(self, text):
    input_ids, type_ids, _ = self._encode(text)
    return self._predict(input_ids, type_ids)

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                tf.TensorSpec([None], tf.string, name="text_pair")])
  def serve_text_pair(self, text, text_pair):
    input_ids, type_ids, _ = self._encode(text, text_pair)
    return self._predict(input_ids, type_ids)

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
  def serve_examples(self, examples):
    parsed = schema.parse_examples(examples)
    input_ids = parsed[schema.INPUT_IDS]
    if self._geometry is not None:  # whole documents: read up to the windows' cap
      outputs = self._predict_windows(input_ids)
      outputs["example_id"] = parsed[schema.EXAMPLE_ID]
      return outputs
    # Records are truncated by preprocessing; a longer one was made for another model.
    check = tf.debugging.assert_less_equal(
        input_ids.row_lengths(), tf.constant(self._max_seq_length_value, tf.int64),
        message=f"a record has more than max_seq_length={self._max_seq_length_value} ids; it "
                "was preprocessed for a different model")
    with tf.control_dependencies([check]):
      outputs = self._predict(input_ids, parsed[schema.TYPE_IDS])
    outputs["example_id"] = parsed[schema.EXAMPLE_ID]
    return outputs

  def _predict_windows(self, input_ids):
    """Documents' ids RaggedTensor int64 [batch, (n)] -> the output dict, read in windows."""
    ids = windows.cut(input_ids, self._geometry)                 # [batch, (windows), (len)]
    # At least one window of one column: the encoder reads position 0 even of an empty batch.
    count = tf.reduce_max(tf.concat([ids.row_lengths(), tf.ones([1], tf.int64)], axis=0))
    width = tf.reduce_max(tf.concat([ids.values.row_lengths(), tf.ones([1], tf.int64)], 0))
    shape = tf.stack([ids.nrows(), count, width])
    features = {
        names.INPUT_WORD_IDS: tf.cast(ids.to_tensor(self._pad_id, shape=shape), tf.int32),
        names.INPUT_MASK: tf.cast(tf.ones_like(ids).to_tensor(0, shape=shape), tf.int32),
        names.INPUT_TYPE_IDS: tf.zeros(shape, tf.int32),
    }  # each int32 [batch, windows, width]
    return self._outputs(tf.cast(self._call_classifier(features), tf.float32))

  def _predict(self, input_ids, type_ids):
    """RaggedTensors int64 [batch, (len)] -> the output dict (see the module docstring)."""
    lengths = input_ids.row_lengths()
    # Pad to the longest row, and to at least one column: the encoder reads position 0
    # ([CLS]) even for an empty batch.
    width = tf.reduce_max(tf.concat([lengths, tf.ones([1], tf.int64)], axis=0))
    shape = tf.stack([input_ids.nrows(), width])
    features = {
        names.INPUT_WORD_IDS: tf.cast(input_ids.to_tensor(self._pad_id, shape=shape), tf.int32),
        names.INPUT_MASK: tf.sequence_mask(lengths, maxlen=width, dtype=tf.int32),
        names.INPUT_TYPE_IDS: tf.cast(type_ids.to_tensor(0, shape=shape), tf.int32),
    }  # each int32 [batch, width]
    # Under a mixed-precision policy the logits may be float16/bfloat16.
    return self._outputs(tf.cast(self._call_classifier(features), tf.float32))

  def _outputs(self, logits):
    """float32 logits [batch, num_outputs] -> the output dict (see the module docstring)."""
    # Temperature scaling; the same float32 division as trainer.eval_loop.calibrated, so that
    # the threshold tuned there decides the same rows here.
    logits = logits / tf.constant(self._temperature_value, tf.float32)
    label_names = tf.constant(self._label_names)
    # binary [batch] = P(label 1); multiclass / multilabel [batch, C].
    probabilities = model_lib.probabilities(logits, self._head_name)
    if self._head_name == "multiclass":
      label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
      label = tf.gather(label_names, label_id)
    else:
      # `>=` in float32, exactly as trainer.evaluation sweeps thresholds.
      label_id = tf.cast(probabilities >= tf.constant(self._threshold_value, tf.float32),
                         tf.int64)
      if self._head_name == "binary":
        label = tf.gather(label_names, label_id)
      else:
        batch_names = tf.broadcast_to(label_names, tf.shape(label_id))
        chosen = tf.ragged.boolean_mask(batch_names, tf.cast(label_id, tf.bool))
        label = tf.strings.reduce_join(chosen, axis=1, separator=MULTILABEL_SEPARATOR)
    return {"probabilities": probabilities, "label_id": label_id, "label": label}


class DocumentServingModule(ServingModule):
  """The ServingModule of a model that reads documents in windows: the text's ids, up to the
  data's stored pieces, are cut into the training's windows (bertcore.windows.cut). There is
  no pair signature: a window holds one text (preprocessing refuses pairs with --max_chunks)."""
  serve_text_pair = None

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def serve_text(self, text):
    input_ids, _, _ = self._encode(text)
    return self._predict_windows(input_ids)


def _check_args(classifier, text_encoder, labels, head, threshold, vocab_file, temperature,
                geometry):
  names.check_head(head)
  if not (temperature is not None and 0.0 < float(temperature) < float("inf")):
    raise ValueError(f"the temperature must be a positive number (1 = uncalibrated), got "
                     f"{temperature!r}")
  if head == "binary" and len(labels) != 2:
    raise ValueError(f"a binary head needs 2 labels, got {list(labels)}")
  if head != "binary" and len(labels) < 2:
    raise ValueError(f"a {head} head needs at least 2 labels, got {list(labels)}")
  if head == "multilabel" and any(MULTILABEL_SEPARATOR in str(x) for x in labels):
    raise ValueError(f"multilabel label names may not contain {MULTILABEL_SEPARATOR!r}: the "
                     "`label` output joins names with it")
  if head != "multiclass" and not (threshold is not None and 0.0 <= float(threshold) <= 1.0):
    raise ValueError(f"a {head} head needs a threshold in [0, 1] (e.g. evaluation's "
                     f"best_threshold, or 0.5), got {threshold!r}")
  tokens = tokenization.load_vocab(vocab_file)
  if tokens != text_encoder.vocab:
    raise ValueError(f"{vocab_file} is not the vocabulary of the text encoder "
                     f"({len(tokens)} vs {len(text_encoder.vocab)} tokens, or different tokens)")
  # One eager call on [CLS] [SEP] builds the model if needed and checks the head width.
  ids = tf.constant([[text_encoder.cls_id, text_encoder.sep_id]], tf.int32)
  if geometry is not None:
    ids = ids[:, None, :]  # one document of one window
  logits = classifier({names.INPUT_WORD_IDS: ids, names.INPUT_MASK: tf.ones_like(ids),
                       names.INPUT_TYPE_IDS: tf.zeros_like(ids)}, training=False)
  expected = names.num_outputs(head, len(labels))
  if logits.shape.rank != 2 or logits.shape[-1] != expected:
    raise ValueError(f"the classifier returns logits of shape {logits.shape.as_list()}, but a "
                     f"{head} head with {len(labels)} labels needs [batch, {expected}]")
  return tokens


def export_saved_model(classifier, text_encoder, labels, head, threshold, export_dir,
                       vocab_file, extra_metadata=None, temperature=1.0, geometry=None,
                       chunk_pooling=""):
  """Writes the serving SavedModel (see the module docstring for its signatures).

  Args:
    classifier: a tf_keras.Model: dict(input_word_ids, input_mask, input_type_ids), each int32
      [batch, seq] -> logits [batch, num_outputs] (1 for binary, C otherwise).
    text_encoder: the bertcore.tokenization.TextEncoder of the training data (vocabulary,
      lower_case, max_seq_length and truncation as in the manifest).
    labels: class names, label id = index (the manifest's `labels`).
    head: "binary" | "multiclass" | "multilabel".
    threshold: the decision threshold for binary / multilabel (e.g. the `best_threshold` of
      trainer.evaluation.compute_metrics); ignored for multiclass (argmax).
    export_dir: where the SavedModel goes (local or gs://). An existing export there is
      replaced.
    vocab_file: the vocab.txt of text_encoder; copied into the export's assets.
    extra_metadata: optional JSON-able dict merged into assets/metadata.json (e.g. the eval
      results or the data manifest's hash).
    temperature: T > 0; the export's probabilities are those of logits / T (the validation's
      fitted temperature, trainer/calibration.py; 1 = the raw sigmoid / softmax).
    geometry, chunk_pooling: a classifier of documents read in windows (inputs [batch,
      windows, seq]): the bertcore.windows.Geometry it was trained with and its
      config.model.chunk_pooling. text_encoder then stores whole documents (max_seq_length =
      the data's stored pieces + 2), which the export cuts into the same windows.
  Returns:
    export_dir.

  The SavedModel is written to `<export_dir>.tmp-<random>` and renamed into place when
  complete, so a crash never leaves a half-written model at export_dir (on gs:// the files
  are moved one by one with saved_model.pb last; see move_into_place). An older export at
  export_dir is moved aside first and deleted afterwards.
  """
  labels = [str(x) for x in labels]
  tokens = _check_args(classifier, text_encoder, labels, head, threshold, vocab_file,
                       temperature, geometry)
  if head == "multiclass" and threshold is not None:
    logging.info("export: a multiclass head predicts by argmax; threshold %s is not used",
                 threshold)
  metadata = _metadata(text_encoder, tokens, labels, head, threshold, extra_metadata,
                       temperature, geometry, chunk_pooling)
  export_dir = export_dir.rstrip("/")
  _write_saved_model(classifier, text_encoder, labels, head, threshold, export_dir,
                     vocab_file, metadata, temperature, geometry)
  logging.info("export: wrote %s (%s head, %d labels, threshold %s, temperature %s)",
               export_dir, head, len(labels), metadata["threshold"], metadata["temperature"])
  return export_dir


def _metadata(text_encoder, tokens, labels, head, threshold, extra_metadata, temperature,
              geometry=None, chunk_pooling=""):
  """The dict written to assets/metadata.json: what serving and scoring need to know.

  extra_metadata (or None) is merged in; ValueError if it would override one of our keys.
  """
  metadata = {
      "format_version": METADATA_FORMAT,
      "package_version": bertcore.__version__,
      "head": head,
      "labels": labels,
      "threshold": None if head == "multiclass" else float(threshold),
      "temperature": float(temperature),
      "num_outputs": names.num_outputs(head, len(labels)),
      "max_seq_length": text_encoder.max_seq_length,
      "truncation": text_encoder.truncation,
      "lower_case": text_encoder.lower_case,
      "vocab_file": VOCAB_ASSET,
      "vocab_size": len(tokens),
      "vocab_sha256": tokenization.vocab_sha256(tokens),
      "signatures": list(SIGNATURES) if geometry is None else list(DOCUMENT_SIGNATURES),
      "multilabel_separator": MULTILABEL_SEPARATOR,
  }
  if geometry is not None:
    metadata["chunking"] = dict(geometry.to_json(), pooling=chunk_pooling)
  if extra_metadata:
    clash = sorted(set(extra_metadata) & set(metadata))
    if clash:
      raise ValueError(f"extra_metadata may not override {', '.join(clash)}")
    metadata.update(extra_metadata)
  return metadata


def _write_saved_model(classifier, text_encoder, labels, head, threshold, export_dir,
                       vocab_file, metadata, temperature, geometry=None):
  """Saves the ServingModule to `<export_dir>.tmp-<random>`, then moves it to export_dir.

  A failure removes the temporary directory and leaves export_dir as it was.
  """
  tmp_dir = f"{export_dir}.tmp-{uuid.uuid4().hex[:12]}"
  # The assets are staged locally under their final names; the SavedModel writer copies them.
  staging = tempfile.mkdtemp(prefix="export-assets-")
  try:
    vocab_path = posixpath.join(staging, VOCAB_ASSET)
    tf.io.gfile.copy(vocab_file, vocab_path)
    metadata_path = posixpath.join(staging, METADATA_ASSET)
    files.write_json(metadata_path, metadata)
    module_class = ServingModule if geometry is None else DocumentServingModule
    module = module_class(classifier, text_encoder, labels, head, threshold, vocab_path,
                          metadata_path, temperature, geometry)
    # The functions themselves, not get_concrete_function() results: the writer traces them
    # once in its own context either way, so tracing them here first doubled the export time.
    signatures = {"serving_default": module.serve_text,
                  "serve_text_pair": module.serve_text_pair,
                  "serve_examples": module.serve_examples}
    if geometry is not None:
      del signatures["serve_text_pair"]
    tf.saved_model.save(module, tmp_dir, signatures=signatures)
    move_into_place(tmp_dir, export_dir)
  except BaseException:
    if tf.io.gfile.exists(tmp_dir):
      tf.io.gfile.rmtree(tmp_dir)
    raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def move_into_place(tmp_dir, export_dir, per_file=None):
  """Moves a complete export from tmp_dir to export_dir, replacing an older export there.

  Locally one directory rename does it atomically. Object stores (gs://, any "scheme://")
  rename a directory object by object, in no useful order; there (or with per_file=True)
  the files are moved one by one with saved_model.pb, which is what makes a directory a
  SavedModel, last, so that a crash mid-way never leaves something that looks complete.
  """
  if per_file is None:
    per_file = "://" in export_dir
  old_dir = None
  if tf.io.gfile.exists(export_dir):
    old_dir = f"{export_dir}.old-{uuid.uuid4().hex[:12]}"
    tf.io.gfile.rename(export_dir, old_dir)
  if per_file:
    files = []
    for root, _, names in tf.io.gfile.walk(tmp_dir):
      rel = posixpath.relpath(root.rstrip("/"), tmp_dir.rstrip("/"))
      files += [name if rel == "." else posixpath.join(rel, name) for name in names]
    files.sort(key=lambda f: (f == SAVED_MODEL_PB, f == posixpath.join("assets", METADATA_ASSET),
                              f))
    for rel in files:
      target = posixpath.join(export_dir, rel)
      tf.io.gfile.makedirs(posixpath.dirname(target))
      tf.io.gfile.rename(posixpath.join(tmp_dir, rel), target, overwrite=True)
    tf.io.gfile.rmtree(tmp_dir)
  else:
    tf.io.gfile.rename(tmp_dir, export_dir)
  if old_dir:
    tf.io.gfile.rmtree(old_dir)
