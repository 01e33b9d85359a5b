"""The Beam transforms, on TestPipeline with assert_that (offline FnApiRunner)."""
import marshal

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from conftest import TINY_VOCAB
from bertcore import csv_source
from bertcore import windows
from preprocess import pipeline
from preprocess import records
from preprocess import rows
from preprocess import settings as preprocess_settings
import tensorflow as tf

COLUMNS = rows.Columns(id="qid", text="question_text", text_pair=None, label="target")
LAYOUT = rows.make_layout(["qid", "question_text", "target"], COLUMNS)


def make_config(max_seq_length=8, pairs=False, num_shards=4, truncation="head", chunking=None):
  columns = COLUMNS._replace(text_pair="pair" if pairs else None)
  settings = preprocess_settings.Settings(
      input_patterns=("f.csv",), test_input_patterns=(), output_dir="", encoding="utf-8",
      delimiter=",", columns=columns, row_config=rows.RowConfig(), labels=None,
      vocab_path="vocab.txt", lower_case=True, max_seq_length=max_seq_length,
      truncation=truncation, num_shards=num_shards, train_fraction=0.8,
      validation_fraction=0.1, split_salt="s", compression=None, batch_size=512,
      wandb_project=None, chunking=chunking)
  return pipeline.Plan(settings=settings, input_files=("f.csv",), test_files=(), temp_dir="",
                       vocab=TINY_VOCAB)


def row(example_id, text, text_pair=None, labels=("1",), line=2):
  return rows.Row(example_id, text, text_pair, labels, "f.csv", line, False,
                  len(text.split()), len(text), text)


def test_validate_rows_splits_kept_and_rejected(offline_runner):
  records = [csv_source.CsvRecord("f.csv", 2, ["q1", "How are you?", "1"], "q1,How are you?,1\n"),
             csv_source.CsvRecord("f.csv", 3, ["q2", "", "0"], "q2,,0\n"),
             csv_source.CsvRecord("f.csv", 4, ["q3", "x", "0", "extra"], "q3,x,0,extra\n")]
  with test_pipeline.TestPipeline(runner=offline_runner) as p:
    out = (p | beam.Create([(LAYOUT, records)])
           | beam.ParDo(pipeline.ValidateRows(rows.RowConfig())).with_outputs(
               "rejected", main="rows"))
    assert_that(out.rows | "Ids" >> beam.Map(lambda chunk: [r.example_id for r in chunk]),
                equal_to([["q1"]]), label="KeptRows")
    assert_that(out.rejected, equal_to([
        rows.Rejection("empty_text", "f.csv", 3, "q2,,0"),
        rows.Rejection("wrong_column_count", "f.csv", 4, "q3,x,0,extra")]), label="Rejected")


def decode(chunk):
  """Tokenize output -> [(id, split, shard, input_ids, type_ids, token_length, truncated)]."""
  out = []
  for split, shard, payload in chunk:
    for r in marshal.loads(payload):
      # The entries before and after label_ids, joined without labels, parse as an Example.
      example = tf.train.Example.FromString(records.ExampleEncoder().join(r[4], b"", r[5]))
      feature = example.features.feature
      assert feature["example_id"].bytes_list.value == [r[0].encode()]
      out.append((r[0], split, shard, list(feature["input_ids"].int64_list.value),
                  list(feature["type_ids"].int64_list.value), r[6], r[7]))
  return out


def expected(example_id, input_ids, type_ids, token_length, truncated, config):
  s = config.settings
  split, shard = rows.assign_split(example_id, s.split_salt, s.train_fraction,
                                   s.validation_fraction, s.num_shards)
  return (example_id, split, shard, input_ids, type_ids, token_length, truncated)


def test_tokenize_exact_ids_and_truncation(offline_runner):
  config = make_config(max_seq_length=8)
  chunk = [row("q1", "How are you?"), row("q2", "Hello, WORLD"), row("q3", "x " * 20),
           row("q4", "\x01\x02", line=9), row("q5", "unknownword")]
  with test_pipeline.TestPipeline(runner=offline_runner) as p:
    out = (p | beam.Create([chunk])
           | beam.ParDo(pipeline.Tokenize(config, pairs=False)).with_outputs(
               "rejected", main="records"))
    assert_that(out.records | beam.FlatMap(decode), equal_to([
        # [CLS]=2 how=4 are=5 you=6 ?=7 [SEP]=3
        expected("q1", [2, 4, 5, 6, 7, 3], [0] * 6, 6, False, config),
        expected("q2", [2, 8, 9, 10, 3], [0] * 5, 5, False, config),
        # 20 pieces, 6 kept (max_seq_length 8 - [CLS] - [SEP]); token_length is before truncation.
        expected("q3", [2] + [33] * 6 + [3], [0] * 8, 22, True, config),
        expected("q5", [2, 1, 3], [0] * 3, 3, False, config),
    ]), label="Records")
    # Only control characters: no word piece survives, so the text is empty after all.
    assert_that(out.rejected, equal_to([rows.Rejection("empty_text", "f.csv", 9, "\x01\x02")]),
                label="Rejected")


def test_tokenize_pairs_truncates_the_longer_segment_first(offline_runner):
  config = make_config(max_seq_length=8, pairs=True)
  chunk = [row("p1", "what is this", "how are you ?"), row("p2", "the cat", "a dog")]
  with test_pipeline.TestPipeline(runner=offline_runner) as p:
    out = (p | beam.Create([chunk])
           | beam.ParDo(pipeline.Tokenize(config, pairs=True)).with_outputs(
               "rejected", main="records"))
    assert_that(out.records | beam.FlatMap(decode), equal_to([
        # 3 + 4 pieces, budget 8 - 3 = 5: b loses 2 (as google-research/bert truncates).
        expected("p1", [2, 11, 12, 13, 3, 4, 5, 3], [0, 0, 0, 0, 0, 1, 1, 1], 10, True, config),
        expected("p2", [2, 34, 35, 3, 39, 40, 3], [0, 0, 0, 0, 1, 1, 1], 7, False, config),
    ]))


def test_tokenize_uses_the_truncation_strategy(offline_runner):
  text = "how are you ? hello , world what is this"  # ids 4..13, 10 pieces; 6 kept
  kept = {"tail": [8, 9, 10, 11, 12, 13], "head_tail": [4, 9, 10, 11, 12, 13]}
  for truncation, ids in kept.items():
    config = make_config(max_seq_length=8, truncation=truncation)
    with test_pipeline.TestPipeline(runner=offline_runner) as p:
      out = (p | truncation >> beam.Create([[row("t1", text), row("t2", "how are you")]])
             | beam.ParDo(pipeline.Tokenize(config, pairs=False)).with_outputs(
                 "rejected", main="records"))
      assert_that(out.records | beam.FlatMap(decode), equal_to([
          expected("t1", [2] + ids + [3], [0] * 8, 12, True, config),
          expected("t2", [2, 4, 5, 6, 3], [0] * 5, 5, False, config),
      ]))


def test_tokenize_chunked_keeps_the_document_up_to_the_windows_cap(offline_runner):
  # Windows of 8 ids (6 pieces), overlap 2 (step 4), at most 3: 6 + 2 * 4 = 14 pieces kept.
  geometry = windows.Geometry(chunk_length=8, chunk_overlap=2, max_chunks=3)
  config = make_config(max_seq_length=8, chunking=geometry, truncation="head_tail")
  text = " ".join(["how"] * 20 + ["x"] * 40 + ["you"] * 20)   # 80 pieces: 10x the window
  chunk = [row("c1", text), row("c2", "how are you"), row("c3", "x " * 14)]
  with test_pipeline.TestPipeline(runner=offline_runner) as p:
    out = (p | beam.Create([chunk])
           | beam.ParDo(pipeline.Tokenize(config, pairs=False)).with_outputs(
               "rejected", main="records"))
    assert_that(out.records | beam.FlatMap(decode), equal_to([
        # --truncation applies to the cap: head_tail keeps 14 // 4 = 3 first and 11 last pieces.
        expected("c1", [2] + [4] * 3 + [6] * 11 + [3], [0] * 16, 82, True, config),
        expected("c2", [2, 4, 5, 6, 3], [0] * 5, 5, False, config),   # short: unchanged
        expected("c3", [2] + [33] * 14 + [3], [0] * 16, 16, False, config),  # exactly the cap
    ]))


def test_union_labels(offline_runner):
  with test_pipeline.TestPipeline(runner=offline_runner) as p:
    labels = (p | beam.Create([[row("a", "x", labels=("b",)), row("b", "x", labels=("a", "c"))],
                               [row("c", "x", labels=("b",))]])
              | beam.CombineGlobally(pipeline.UnionLabels()))
    assert_that(labels, equal_to([("a", "b", "c")]))
