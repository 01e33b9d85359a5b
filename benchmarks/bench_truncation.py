r"""Tokenizer throughput of each --truncation strategy (what preprocessing and serving run).

  .venv/bin/python -m benchmarks.bench_truncation --vocab_file=runs/encoders/all-minilm-l6-v2/vocab.txt

Encodes batches of --batch_size generated texts (--min_words to --max_words vocabulary words each,
so that most are longer than the budget) with TextEncoder.encode traced in a tf.function, as the
preprocessing job's Tokenize does, for head / tail / head_tail at each --max_seq_length, single
texts and pairs. Strategies are measured interleaved, --repeat rounds, best round kept; prints
texts/s and the ratio to head, then the truncation op alone against the tokenizer alone (the
figure that survives a loaded machine). One JSON line per figure is appended to --out
(truncation.jsonl) with provenance (benchmarks/common.py); `python -m benchmarks report` renders
truncation.md.
"""
import argparse
import os
import random
import sys
import time

from benchmarks import common
from bertcore import names  # noqa: E402  (imports bertcore first: Keras 2 before TensorFlow)
from bertcore import tokenization  # noqa: E402

import tensorflow as tf  # noqa: E402


def make_texts(vocab, count, min_words, max_words, seed):
  """count texts of random whole-word vocabulary entries."""
  words = [w for w in vocab if w.isalpha() and len(w) > 1]
  rng = random.Random(seed)
  return [" ".join(rng.choice(words) for _ in range(rng.randint(min_words, max_words)))
          for _ in range(count)]


def traced_encode(encoder, pairs):
  spec = tf.TensorSpec([None], tf.string)
  if pairs:
    return tf.function(encoder.encode, input_signature=[spec, spec], autograph=False)
  return tf.function(lambda texts: encoder.encode(texts), input_signature=[spec],
                     autograph=False)


def time_batches(encode, batches):
  """Seconds to encode every batch (each a tuple of string tensors)."""
  start = time.perf_counter()
  for batch in batches:
    out = encode(*batch)
    ids = out[0] if isinstance(out, tuple) else out  # encode's (ids, types, pieces), or pieces
    ids.flat_values.numpy()  # numpy(): wait for the result, as Tokenize does
  return time.perf_counter() - start


def time_cut_alone(vocab, texts, max_seq_length, repeat):
  """Best-of-repeat seconds of (word pieces of texts, head_tail truncate of those pieces):
  the strategies' only extra work next to the tokenizer's, measured side by side."""
  encoder = tokenization.TextEncoder(vocab, True, max_seq_length)
  split = tf.function(encoder.word_pieces, autograph=False)
  pieces = split(tf.constant(texts))
  keep = tf.minimum(pieces.row_lengths(), max_seq_length - 2)
  cut = tf.function(lambda p, k: tokenization.truncate(p, k, "head_tail"), autograph=False)
  cut(pieces, keep)
  best_split = best_cut = float("inf")
  for _ in range(repeat):
    best_split = min(best_split, time_batches(split, [(tf.constant(texts),)]))
    best_cut = min(best_cut, time_batches(cut, [(pieces, keep)]))
  return best_split, best_cut


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--vocab_file", required=True)
  parser.add_argument("--max_seq_length", default="128,512")
  parser.add_argument("--batch_size", type=int, default=512)
  parser.add_argument("--batches", type=int, default=8)
  parser.add_argument("--min_words", type=int, default=50)
  parser.add_argument("--max_words", type=int, default=600)
  parser.add_argument("--repeat", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(common.RESULTS, "truncation.jsonl"))
  args = parser.parse_args()
  machine, before = common.machine(), common.sample()
  records = []

  vocab = tokenization.load_vocab(args.vocab_file)
  texts = make_texts(vocab, args.batch_size * args.batches, args.min_words, args.max_words, 0)
  pairs = make_texts(vocab, len(texts), args.min_words // 4, args.max_words // 4, 1)
  print(f"{len(texts)} texts of {args.min_words}-{args.max_words} words "
        f"(pairs: + {args.min_words // 4}-{args.max_words // 4} words), batch {args.batch_size}, "
        f"best of {args.repeat}")
  for max_seq_length in [int(x) for x in args.max_seq_length.split(",")]:
    for paired in (False, True):
      batches = []
      for i in range(0, len(texts), args.batch_size):
        batch = (tf.constant(texts[i:i + args.batch_size]),)
        if paired:
          batch += (tf.constant(pairs[i:i + args.batch_size]),)
        batches.append(batch)
      encoders = {}
      for truncation in names.TRUNCATIONS:
        encode = traced_encode(
            tokenization.TextEncoder(vocab, True, max_seq_length, truncation), paired)
        time_batches(encode, batches[:1])  # trace
        encoders[truncation] = encode
      best = {t: float("inf") for t in names.TRUNCATIONS}
      for _ in range(args.repeat):
        for truncation, encode in encoders.items():
          best[truncation] = min(best[truncation], time_batches(encode, batches))
      for t, seconds in best.items():
        records.append(dict(kind="encode", max_seq_length=max_seq_length,
                            input="pairs" if paired else "single", truncation=t,
                            texts=len(texts), texts_per_s=len(texts) / seconds,
                            ratio_to_head=best["head"] / seconds))
        print(f"max_seq_length {max_seq_length}, {records[-1]['input']}, {t}: "
              f"{records[-1]['texts_per_s']:,.0f} texts/s "
              f"({records[-1]['ratio_to_head']:.2f}x head)", flush=True)
    split, cut = time_cut_alone(vocab, texts, max_seq_length, args.repeat)
    records.append(dict(kind="cut_alone", max_seq_length=max_seq_length, texts=len(texts),
                        split_seconds=split, cut_seconds=cut, cut_share=cut / split))
    print(f"max_seq_length {max_seq_length}: word pieces of {len(texts)} texts {split:.3f} s, "
          f"head_tail truncate of them {cut:.3f} s ({cut / split:.1%} of the tokenizer)")
  provenance = common.provenance(machine, before, common.sample())
  settings = {k: getattr(args, k) for k in ("batch_size", "batches", "min_words", "max_words",
                                            "repeat")}
  for record in records:
    common.append_record(args.out, dict(
        record, settings=settings, provenance=provenance,
        command=["python", "-m", "benchmarks.bench_truncation"] + sys.argv[1:]))


if __name__ == "__main__":
  main()
