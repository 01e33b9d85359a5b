"""The small names every job shares: choices, model input keys, file names, split names.

TensorFlow-free on purpose: `launch` validates submissions with these names on machines
without TensorFlow, and preprocess / trainer import the same tuples, so a new head or
strategy is added in one place.
"""

# Classifier heads and how the encoder output is pooled (config.model.head / .pooling).
HEADS = ("binary", "multiclass", "multilabel")
POOLINGS = ("cls", "mean")
# tf.distribute strategies (trainer.task --strategy) and Keras precision policies.
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
EXPORT_PRECISIONS = ("float32", "bfloat16")   # what an export computes in

# The preprocessing job's splits, in the order they are written and reported.
SPLITS = ("train", "validation", "test")

# The classifier's inputs (Model Garden BERT encoder keys), each int32 [batch, seq].
INPUT_WORD_IDS = "input_word_ids"
INPUT_MASK = "input_mask"
INPUT_TYPE_IDS = "input_type_ids"
MODEL_INPUTS = (INPUT_WORD_IDS, INPUT_MASK, INPUT_TYPE_IDS)

# Files of a preprocessed data directory.
MANIFEST_FILE = "manifest.json"
DEAD_LETTER_FILE = "rejected.jsonl"
# Files of an encoder directory (trainer.convert writes them; Google's TF2 BERT layout).
BERT_CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
CHECKPOINT_PREFIX = "bert_model.ckpt"
# Files of a model directory (trainer.task writes them).
CONFIG_FILE = "config.json"
RESULTS_FILE = "eval_results.json"
EXPORT_METADATA_FILE = "metadata.json"


def num_outputs(head, num_labels):
  """Width of the logits: 1 for a binary (sigmoid) head, else one per label.

  Raises ValueError for an unknown head (callers check the number of labels themselves).
  """
  check_head(head)
  return 1 if head == "binary" else num_labels


def check_head(head):
  """Raises ValueError with one line unless `head` is one of HEADS."""
  if head not in HEADS:
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")


# How a text longer than max_seq_length is cut (preprocess --truncation; the export reads it
# from the manifest): keep its first pieces, its last pieces, or a quarter head + the tail.
TRUNCATIONS = ("head", "tail", "head_tail")


def check_truncation(truncation, what="truncation"):
  """Raises ValueError with one line unless `truncation` is one of TRUNCATIONS; `what` names
  the setting in the message (e.g. the flag "--truncation")."""
  if truncation not in TRUNCATIONS:
    raise ValueError(f"{what} must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
