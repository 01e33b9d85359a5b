"""An export's metadata (assets/metadata.json, written by trainer.export) and what it implies.

  read_metadata(model_dir)         the metadata; ValueError (one line) if not an export of ours
  check_export(model_dir)          read_metadata + the files and keys serving needs
  check_signature(...)             the export has the signature an input needs
  unescape_html_default(...)       --unescape_html as the training data had it
  temperature(metadata)            the T the export divides its logits by (1 for older exports)
  compute_dtype(metadata, ...)     float32 or bfloat16, as served
  emulation_warning(metadata, ...) a warning for bfloat16 on a CPU without it
  WordPieceCounter(model_dir)      texts -> word-piece counts, the export's own tokenizer
"""
import posixpath

import tensorflow as tf

from bertcore import files
from bertcore import names
from bertcore import tokenization

VOCAB_ASSET = names.VOCAB_FILE
METADATA_ASSET = names.EXPORT_METADATA_FILE
SAVED_MODEL_PB = "saved_model.pb"
SIGNATURES = ("serving_default", "serve_text_pair", "serve_examples")


def read_metadata(export_dir):
  """The assets/metadata.json of an export; ValueError if export_dir is not one."""
  path = posixpath.join(export_dir, "assets", METADATA_ASSET)
  if not tf.io.gfile.exists(path):
    if not tf.io.gfile.exists(export_dir):
      raise ValueError(f"model directory {export_dir} does not exist")
    raise ValueError(f"{export_dir} is not a model exported by trainer.export (it has no "
                     f"assets/{METADATA_ASSET})")
  return files.read_json(path)


def check_export(model_dir):
  """The export's metadata; ValueError (one line) if model_dir is not a complete export of ours."""
  metadata = read_metadata(model_dir)
  if not tf.io.gfile.exists(posixpath.join(model_dir, SAVED_MODEL_PB)):
    raise ValueError(f"{model_dir} has export metadata but no {SAVED_MODEL_PB}: an "
                     "incomplete export")
  missing = [k for k in ("head", "labels", "vocab_sha256") if k not in metadata]
  if missing:
    raise ValueError(f"{model_dir}: assets/{METADATA_ASSET} lacks {', '.join(missing)}; "
                     "re-export the model with this package")
  return metadata


def check_signature(metadata, model_dir, signature, needed_for):
  """ValueError (one line) unless the export has `signature` (needed_for: e.g. the flag)."""
  if signature not in metadata.get("signatures", []):
    raise ValueError(f"{model_dir} has no {signature} signature for {needed_for}")


def unescape_html_default(metadata, unescape_html):
  """The --unescape_html to use: the flag's if given, else the training data's (the export's
  metadata.json `input.unescape_html`; False for exports that do not record it)."""
  if unescape_html is not None:
    return unescape_html
  return bool((metadata.get("input") or {}).get("unescape_html", False))


def temperature(metadata):
  """The temperature an export's probabilities are calibrated with: metadata.json's
  `temperature`, or 1.0 for exports made before temperature scaling (their raw probabilities)."""
  value = metadata.get("temperature")
  return 1.0 if value is None else float(value)


def compute_dtype(metadata, bfloat16=False):
  """What the export computes in when served: "bfloat16" if it was exported so (metadata.json's
  `compute_dtype`, from config.export_precision) or --bfloat16 rewrites it, else "float32"."""
  return "bfloat16" if bfloat16 or metadata.get("compute_dtype") == "bfloat16" else "float32"


def emulation_warning(metadata, bfloat16=False, native=None):
  """The warning to print when the export would compute in bfloat16 on a CPU that emulates it
  (slower than float32), else None. native: hardware.native_bfloat16() unless given."""
  if compute_dtype(metadata, bfloat16) != "bfloat16":
    return None
  if native is None:
    from bertcore import hardware  # pylint: disable=import-outside-toplevel
    native = hardware.native_bfloat16()
  if native:
    return None
  what = "--bfloat16" if bfloat16 else "this export (config.export_precision=bfloat16)"
  return (f"warning: {what} computes in bfloat16, which this CPU emulates (no AVX512_BF16 or "
          "AMX): slower than float32")


def multilabel_separator(metadata):
  """What joins a multilabel prediction's names in the `label` output; None for other heads."""
  if metadata["head"] != "multilabel":
    return None
  return metadata.get("multilabel_separator", "|")


class WordPieceCounter:
  """texts -> their word-piece counts, with the export's own vocabulary and casing.

  The sort key of serving.predict and scoring.run, which batch rows of similar lengths because the
  export pads each batch to its longest row; characters are a poor proxy for word pieces on real
  tweets (emoji, URLs, hashtags). Tokenizing twice is cheap next to running the model.
  """

  def __init__(self, model_dir):
    metadata = read_metadata(model_dir)
    vocab = tokenization.load_vocab(posixpath.join(model_dir, "assets", metadata["vocab_file"]))
    self._encoder = tokenization.TextEncoder(vocab, metadata["lower_case"],
                                             metadata["max_seq_length"])

  def __call__(self, texts, pair_texts=None):
    """-> list of ints, one per text (+ its pair)."""
    if not texts:
      return []
    counts = self._encoder.word_pieces(tf.constant(texts)).row_lengths()
    if pair_texts is not None:
      counts += self._encoder.word_pieces(tf.constant(pair_texts)).row_lengths()
    return counts.numpy().tolist()
