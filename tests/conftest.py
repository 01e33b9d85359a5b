"""Shared test fixtures: a tiny BERT vocabulary, CSV writing, a Beam runner that stays offline,
one tiny exported classifier per session."""
import bertcore  # noqa: F401  (Keras 2 + version check before TensorFlow loads)

import pytest

import helpers

# Ids are the list positions: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 how=4 ...
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "how", "are", "you", "?", "hello", ",", "world",
    "what", "is", "this", "plain", "question", "comma", "inside", "she", "said", '"', "hi",
    "line", "one", "two", "long", "label", "with", "space", "emoji", "and", "rt", "##l", "x",
    "the", "cat", "sat", "on", "mat", "a", "dog", ".", "##s",
]


@pytest.fixture(scope="session")
def tiny_vocab_file(tmp_path_factory):
  """A vocab.txt with TINY_VOCAB (lower-case), written once per test session."""
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
  return str(path)


def write_bytes(path, data):
  """Writes raw bytes (CSV fixtures need exact bytes: BOM, CRLF, bad UTF-8)."""
  path.write_bytes(data)
  return str(path)


@pytest.fixture
def float32_policy():
  """Resets the Keras precision policy a test's trainer run set (mixed precision is global)."""
  yield
  from trainer import strategy as strategy_lib
  strategy_lib.set_precision("float32")


@pytest.fixture
def offline_runner():
  """A Beam runner for TestPipeline that never tries the Prism download (bertcore.beam_jobs)."""
  from apache_beam.options.pipeline_options import PipelineOptions
  from bertcore import beam_jobs
  return beam_jobs.make_runner(PipelineOptions([]))


@pytest.fixture(scope="session")
def binary_model(tmp_path_factory):
  """A tiny random binary classifier (labels "0"/"1", threshold 0.5) exported once per session
  (tests/helpers.py); predict, scoring and serving tests read it and must not change it."""
  return helpers.export_binary_model(tmp_path_factory.mktemp("binary_model"))
