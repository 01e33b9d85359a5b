"""An export's signatures on a batch: what serving.predict and scoring's model handler call.

The export (trainer.export) tokenizes in-graph, so serving feeds strings: `serving_default`
takes texts, `serve_text_pair` texts and pair texts, `serve_examples` serialized tf.Examples.
"""
import tensorflow as tf


def load(model_dir):
  """The loaded SavedModel (tensorflow_text registers the tokenizer's ops first)."""
  import tensorflow_text  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  return tf.saved_model.load(model_dir)


def signature_name(input_format="csv", with_pair=False):
  """The signature for the input: records, text pairs or texts."""
  if input_format == "tfrecord":
    return "serve_examples"
  return "serve_text_pair" if with_pair else "serving_default"


def predict(model, signature, texts, pair_texts=None):
  """-> [(label, probabilities float32 [num_probabilities])], one per input.

  texts: strings (or, for serve_examples, serialized tf.Examples); pair_texts: the second
  texts for serve_text_pair.
  """
  if signature == "serve_examples":
    inputs = {"examples": tf.constant(texts)}
  else:
    inputs = {"text": tf.constant(texts)}
  if signature == "serve_text_pair":
    inputs["text_pair"] = tf.constant(pair_texts)
  outputs = model.signatures[signature](**inputs)
  # binary: [batch] -> [batch, 1]; otherwise [batch, C].
  probabilities = outputs["probabilities"].numpy().reshape(len(texts), -1)
  labels = [name.decode("utf-8") for name in outputs["label"].numpy()]
  return list(zip(labels, probabilities))
