"""One training step of the tweets recipe (MiniLM sizes): examples/s, tokens/s, FLOP/s and MFU.

  python -m benchmarks.bench_step                                  # fixed shapes [32, L]
  python -m benchmarks.bench_step --variants=f32,bf16,xla --lengths=32 --rounds=6
  python -m benchmarks.bench_step --data_dir=runs/data/tweets_binary --buckets=16,32,64,128 \\
      --buckets=derived --buckets=every:4 --lengths=               # real bucketed batches
  python -m benchmarks.bench_step --profile=/tmp/D/profile --lengths=32   # where a step goes

The step is the trainer's: classifier forward + sigmoid loss, tape gradient, clip by global
norm 1.0, Model Garden AdamW (weight decay 0.01, warm-up + decay schedule). The encoder is a
randomly initialised BertEncoderV2 of all-MiniLM-L6-v2's sizes (speed does not depend on the
weights). Variants (each its own model and optimizer, measured interleaved A B C A B C ...,
so a shared machine's load hits them alike; figures are medians over rounds, ratios are
against the first variant of the same round):
  f32          float32, no XLA (today's CPU default)
  bf16         mixed_bfloat16 policy
  f16          mixed_float16 policy (with loss scaling, as the trainer does on GPUs)
  xla          jit_compile on forward+backward only (what --config.xla does today)
  xla_step     jit_compile on the whole step (forward, backward, clip, AdamW update)
  bf16_xla     mixed_bfloat16 + xla_step
  noemb        the word-embedding table gets no update: an upper bound on what any sparse
               embedding update can save (a measurement, not a training option)
  lazyemb      the word-embedding table gets a sparse ("lazy") AdamW update of the rows in the
               batch only (moments, weight decay and step of the other rows wait); the rest
               as f32. bf16_lazyemb: the same under mixed_bfloat16.
  lazyemb_ld   lazyemb with train.layer_decay=0.9 (a learning rate per layer: the cost of it)
  nodrop       dropout 0 (the cost of dropout's random masks)
  tanh         tanh-approximate GELU instead of the exact erf one
  einsum_attn  lazyemb with the attention's two einsums as Model Garden runs them (what the
               trainer did before trainer.encoders.MatmulAttention; every other variant has
               the trainer's batched matmuls). Records of commits 075ac62..45e7e47 also have
               einsum_ffn: the feed-forward layers as einsums against 2-D matmuls there, a
               form not kept (no gain in the step).
  einsum_dense lazyemb with the dense layers as Model Garden's einsums, the GELU a layer of
               its own (what the trainer did before trainer.encoders.FusedDense)
With --data_dir and --packed=128,64 every variant is also timed on the first bucket set's
examples packed into rows of each length (benchmarks/packing.py: a block-diagonal attention
mask, positions per example, pooled per example), in as many steps as that set, interleaved
with the sets; the speedup_vs_first_set of a packed record is its like-for-like figure.
Model FLOPs per step count the encoder's matmuls, forward + backward (x3): 2 * params * tokens
for the dense layers and 4 * batch * L^2 * hidden per layer for attention scores and values.
MFU divides a variant's achieved model FLOP/s by the matmul peak of its own dtype (float32;
bfloat16 for the mixed_bfloat16 variants; float16 for f16), measured in the same run with a
large tf.matmul before AND after the variants, the higher kept (peaks_used). A step that beats
both measurements proves them low (other load during the measurement): its own FLOP/s is then
the peak, and the record says so (source "step"), so MFU <= 1 by construction.
Thread settings must be fixed before TensorFlow starts: run once per setting with
--intra_op_threads / --inter_op_threads and compare the printed ratios to the matmul peak.
Results are printed and appended as JSON lines to --out (benchmarks/results/step.jsonl), each
with the peaks, its dtype and precision policy, and provenance (benchmarks/common.py; the load
is sampled before the first and after the last measurement).
"""
import argparse
import collections
import os
import statistics
import sys
import time

from benchmarks import common
import bertcore  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from bertcore import names, schema  # noqa: E402
from benchmarks import packing  # noqa: E402
from trainer import checkpointing, config as config_lib, encoders, model as model_lib  # noqa: E402
from trainer import optimization as trainer_optimization, steps as steps_lib  # noqa: E402

MINILM = dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
              vocab_size=30522, hidden_act="gelu_exact")
VARIANTS = ("f32", "bf16", "f16", "xla", "xla_step", "bf16_xla", "noemb", "lazyemb", "nodrop",
            "tanh", "bf16_lazyemb", "lazyemb_ld", "einsum_attn", "einsum_dense")
WORD_EMBEDDINGS = "word_embeddings"
PACKED_INPUTS = ("input_word_ids", "input_type_ids", packing.SEGMENT_IDS, packing.POSITIONS)
MAX_PER_ROW = 16          # examples per packed row at most (tweets: about 4 fit in 128 tokens)
POLICIES = {"bf16": "mixed_bfloat16", "bf16_xla": "mixed_bfloat16",
            "bf16_lazyemb": "mixed_bfloat16", "f16": "mixed_float16"}   # the rest: float32
DTYPES = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16", "float32": "float32"}


def policy(name):
  """The Keras precision policy of a variant."""
  return POLICIES.get(name, "float32")


def dtype(name):
  """The dtype a variant's matmuls run in: the peak its MFU divides by."""
  return DTYPES[policy(name)]


def peaks_used(before, after, achieved):
  """{dtype: {before, after, used, source}} for MFU.

  before, after: {dtype: matmul FLOP/s} measured before / after the variants; achieved:
  {dtype: the highest model FLOP/s any variant of that dtype reached}. `used` is the higher
  measurement ("matmul"), or the achieved figure where a step beat both ("step").
  """
  out = {}
  for d in before:
    measured = max(before[d], after[d])
    step = achieved.get(d, 0.0)
    out[d] = {"before": before[d], "after": after[d], "used": max(measured, step),
              "source": "step" if step > measured else "matmul"}
  return out


def mfu(model_flops_per_s, peak):
  """Model FLOP/s utilisation: achieved / peak, for a peak >= achieved (peaks_used)."""
  if peak <= 0 or model_flops_per_s > peak:
    raise ValueError(f"MFU needs 0 < achieved <= peak, got {model_flops_per_s} / {peak}")
  return model_flops_per_s / peak


def apply_mfu(records, before, after):
  """Sets dtype, mfu (against the own dtype's peak) and the peaks on every timed record."""
  timed = [r for r in records if "model_flops_per_s" in r]
  achieved = {}
  for r in timed:
    r["dtype"] = dtype(r["variant"])
    achieved[r["dtype"]] = max(achieved.get(r["dtype"], 0.0), r["model_flops_per_s"])
  peaks = peaks_used(before, after, achieved)
  for r in records:
    r["peaks"] = peaks
  for r in timed:
    r["mfu"] = mfu(r["model_flops_per_s"], peaks[r["dtype"]]["used"])
  return peaks


def model_flops(batch, length, hidden, layers, intermediate):
  """Matmul FLOPs of one encoder forward+backward on [batch, length] tokens."""
  dense_params = layers * (4 * hidden * hidden + 2 * hidden * intermediate)
  tokens = batch * length
  forward = 2 * dense_params * tokens + layers * 4 * batch * length * length * hidden
  return 3 * forward


def matmul_peak(dtype=tf.float32, n=2048, seconds=3.0):
  """Achieved FLOP/s of an [n, n] x [n, n] matmul, repeated for about `seconds`."""
  a = tf.random.normal([n, n], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)

  @tf.function
  def repeat(a, b, k):
    total = tf.zeros([], tf.float32)
    for _ in tf.range(k):
      total += tf.cast(tf.reduce_sum(tf.matmul(a, b)[:1, :1]), tf.float32)
    return total
  repeat(a, b, tf.constant(2)).numpy()
  k, best = 2, 0.0
  start = time.perf_counter()
  while time.perf_counter() - start < seconds:
    t = time.perf_counter()
    repeat(a, b, tf.constant(k)).numpy()
    best = max(best, 2 * n ** 3 * k / (time.perf_counter() - t))
    k = min(k * 2, 16)
  return best


def build_variant(name, batch_size, total_steps=10000, packed=False):
  """(step_fn, classifier) for one variant: step_fn(features, labels) -> loss; packed: the
  step takes packed batches (benchmarks/packing.py)."""
  precision = policy(name)
  tf_keras.mixed_precision.set_global_policy(precision)
  config = config_lib.default_config()
  for k, v in MINILM.items():
    if k == "vocab_size":
      continue
    setattr(config.encoder, k, v)
  if name == "tanh":
    config.encoder.hidden_act = "gelu"
  if name == "nodrop":
    config.encoder.dropout = 0.0
    config.model.dropout = 0.0
  config.model.pooling = "mean"
  manifest = schema.Manifest(labels=["rest", "positive"], vocab_sha256="", max_seq_length=128,
                             splits={}, vocab_size=MINILM["vocab_size"])
  tf_keras.utils.set_random_seed(0)
  classifier, encoder = model_lib.build_classifier(config, manifest)
  if name == "einsum_attn":
    encoders.use_matmul_attention(encoder, enabled=False)
  if name == "einsum_dense":
    encoders.use_fused_dense(encoder, enabled=False)
  lazy = name in ("lazyemb", "bf16_lazyemb", "lazyemb_ld", "einsum_attn", "einsum_dense")
  # The trainer's optimizer (trainer/optimization.py); without lazy, Model Garden's AdamW with
  # its schedule, as the trainer was before train.lazy_embeddings.
  config.train.update(learning_rate=5e-5, lazy_embeddings=lazy,
                      lr_schedule="linear" if lazy else "polynomial_from_zero")
  config.train.layer_decay = 0.9 if name == "lazyemb_ld" else 1.0
  optimizer = trainer_optimization.create_optimizer(
      config.train, total_steps, "float32",
      checkpointing.lr_multipliers(config.train, classifier, encoder))
  if precision == "mixed_float16":
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  tf_keras.mixed_precision.set_global_policy("float32")
  step = make_step(classifier, optimizer, xla=name in ("xla", "xla_step", "bf16_xla"),
                   whole_step=name in ("xla_step", "bf16_xla"),
                   skip_embeddings=name == "noemb",
                   loss_fn=packing.packed_loss(classifier, encoder) if packed else None)
  return step, classifier


def make_step(classifier, optimizer, *, xla=False, whole_step=False, skip_embeddings=False,
              clip_norm=1.0, loss_fn=None):
  """The trainer's replica step on one device: loss, gradients, clip, AdamW update.

  loss_fn(features, labels) -> scalar loss; None: the classifier's mean binary loss on
  padded batches. Packed batches (a loss_fn of benchmarks.packing) take any int32 features.
  """
  loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
  tvars = list(classifier.trainable_variables)
  table = [v for v in tvars if WORD_EMBEDDINGS in v.name][0]
  if skip_embeddings:
    tvars.remove(table)

  packed = loss_fn is not None
  if loss_fn is None:
    def loss_fn(features, labels):
      logits = classifier(features, training=True)
      return tf.reduce_mean(model_lib.per_example_loss(labels, logits, "binary"))

  def forward_backward(features, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(features, labels)
      scaled = optimizer.get_scaled_loss(loss) if loss_scaled else loss
    return loss, tape.gradient(scaled, tvars)

  if xla and not whole_step:
    forward_backward = tf.function(forward_backward, jit_compile=True)

  def step(features, labels):
    loss, grads = forward_backward(features, labels)
    used = [(g, v) for g, v in zip(grads, tvars) if g is not None]
    # As trainer/steps.py on one replica: repeated embedding rows summed once. Packed rows'
    # gathered positions give the position table a sparse gradient too: dense, as unpacked.
    grads = [g if not isinstance(g, tf.IndexedSlices) else
             steps_lib._sum_repeated_rows(g) if v is table else tf.convert_to_tensor(g)  # noqa
             for g, v in used]
    if loss_scaled:
      grads = optimizer.get_unscaled_gradients(grads)
    grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    used_vars = [v for _, v in used]
    optimizer.apply_gradients(zip(grads, used_vars))
    return loss
  inputs = PACKED_INPUTS if packed else names.MODEL_INPUTS
  features = {k: tf.TensorSpec([None, None], tf.int32) for k in inputs}
  if packed:
    features[packing.SLOT_WEIGHTS] = tf.TensorSpec([None], tf.float32)
  signature = [features, tf.TensorSpec([None, 1], tf.float32)]
  return tf.function(step, input_signature=signature, jit_compile=bool(whole_step))


def fixed_batch(batch_size, length, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1000, MINILM["vocab_size"], size=(batch_size, length)).astype(np.int32)
  features = {"input_word_ids": tf.constant(ids),
              "input_mask": tf.ones([batch_size, length], tf.int32),
              "input_type_ids": tf.zeros([batch_size, length], tf.int32)}
  labels = tf.constant(rng.randint(2, size=(batch_size, 1)).astype(np.float32))
  return features, labels


def real_batches(data_dir, boundaries, batch_size, num_batches, seed=0):
  """num_batches bucketed training batches of the tweets, in memory (input cost excluded)."""
  from bertcore import schema
  from trainer import input_pipeline
  manifest = schema.read_manifest(data_dir)
  config = config_lib.default_config()
  config.train.update(global_batch_size=batch_size, padding="bucket",
                      bucket_boundaries=tuple(boundaries), seed=seed)
  src = input_pipeline.source(data_dir, "train", manifest, "binary", "positive")
  ds = input_pipeline.train_batches(src, config.train, config.data)
  out = []
  for batch in ds.take(num_batches):
    out.append(({k: batch[k] for k in names.MODEL_INPUTS}, batch["labels"]))
  return out


def time_steps(step, batches, repeats=1):
  """Seconds for running step over batches `repeats` times (the last loss is fetched)."""
  start = time.perf_counter()
  for _ in range(repeats):
    for features, labels in batches:
      loss = step(features, labels)
  loss.numpy()
  return time.perf_counter() - start


def interleaved(steps, batches_of, rounds, repeats):
  """({key: [seconds per round]}, {key: seconds of the warm-up pass}): keys run A B C A B C ...

  The warm-up pass runs each key's batches once first: it traces and sets up every new shape
  (oneDNN primitives), so its time minus a round's is what those shapes cost once.
  """
  first = {key: time_steps(step, batches_of(key)) for key, step in steps.items()}
  times = collections.defaultdict(list)
  for _ in range(rounds):
    for key, step in steps.items():
      times[key].append(time_steps(step, batches_of(key), repeats))
  return times, first


def summarise(times, examples, real_tokens, padded_tokens, flops, label, base):
  """Printable rows and JSON records for one measurement (MFU is set at the end: apply_mfu)."""
  records = []
  for name, secs in times.items():
    med = statistics.median(secs)
    ratio = statistics.median(b / s for b, s in zip(times[base], secs))
    rec = dict(label=label, variant=name, examples_per_s=examples / med,
               real_tokens_per_s=real_tokens / med, padded_tokens_per_s=padded_tokens / med,
               model_flops_per_s=flops / med, padding_efficiency=real_tokens / padded_tokens,
               speedup_vs_base=ratio, base=base, rounds=len(secs), precision=policy(name))
    records.append(rec)
    print(f"{label:<22} {name:<9} {rec['examples_per_s']:8.1f} ex/s {rec['real_tokens_per_s']:8.0f}"
          f" tok/s  {rec['model_flops_per_s'] / 1e9:6.1f} GFLOP/s  "
          f"pad.eff {rec['padding_efficiency']:.2f}  x{ratio:.2f} vs {base}", flush=True)
  return records


def profile_step(step, features, labels, logdir, steps=5):
  """Traces `steps` steps with the TensorFlow profiler; returns {category: seconds per step}."""
  tf.profiler.experimental.start(logdir)
  for _ in range(steps):
    step(features, labels).numpy()
  tf.profiler.experimental.stop()
  return {k: v / steps for k, v in op_time_by_category(logdir).items()}


CATEGORIES = (  # first match wins: (category, substrings of the lower-cased "name:type")
    ("optimizer update + clip (AdamW)", ("adamweightdecay", "global_norm")),
    ("embedding lookup + gradient", ("embedding", "unsortedsegmentsum", "gather")),
    ("attention scores + values (and their transposes)",
     ("self_attention/einsum", "self_attention/matmul", "self_attention/transpose")),
    ("softmax", ("softmax",)),
    ("dense matmuls (QKV, output, FFN)", ("einsum", "matmul")),
    ("GELU", ("gelu", "intermediate_activation")),
    ("LayerNorm", ("norm",)),
    ("dropout", ("dropout",)),
)


def op_time_by_category(logdir):
  """Sums the op events of the newest trace in logdir by CATEGORIES: {category: seconds}.

  Only events named "op_name:OpType" count (the executor's enclosing events would count
  their ops twice); the sum covers both cores, so it exceeds the wall time.
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = tf.io.gfile.glob(os.path.join(logdir, "plugins/profile/*/*.xplane.pb"))
  space = xplane_pb2.XSpace()
  with tf.io.gfile.GFile(sorted(paths)[-1], "rb") as f:
    space.ParseFromString(f.read())
  totals = collections.Counter()
  for plane in space.planes:
    if plane.name != "/host:CPU":
      continue
    for line in plane.lines:
      if "tf_Compute" not in line.name:
        continue
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" in name and not name.startswith("ExecutorState"):  # an op, not a container
          totals[categorise(name)] += event.duration_ps * 1e-12
  return dict(totals)


def categorise(op_name):
  low = op_name.lower()
  for category, keys in CATEGORIES:
    if any(k in low for k in keys):
      return category
  return "other (bias grads, residual adds, loss, copies)"


def parse_args(argv=None):
  """The command line -> argparse.Namespace; exits with one line on an unknown variant."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--variants", default="f32,lazyemb,bf16,bf16_lazyemb")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--lengths", default="16,32,64,128", help="fixed shapes [batch, L]")
  p.add_argument("--data_dir", default="", help="also time real bucketed batches")
  p.add_argument("--buckets", action="append", default=[],
                 help="bucket set: 16,32,64,128, 'derived' (trainer.buckets) or 'every:N' "
                      "(multiples of N; every:1 = each batch's longest row); repeatable")
  p.add_argument("--num_batches", type=int, default=24, help="real batches per bucket set")
  p.add_argument("--packed", default="", help="row lengths: also time the first set's examples "
                 "packed into rows of each (benchmarks/packing.py); needs --data_dir")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--repeats", type=int, default=3, help="fixed-shape steps per round")
  p.add_argument("--intra_op_threads", type=int, default=0)
  p.add_argument("--inter_op_threads", type=int, default=0)
  p.add_argument("--profile", default="", help="trace dir: profile f32 at the first length")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "step.jsonl"))
  args = p.parse_args(argv)
  args.variants = common.variant_names(p, args.variants, VARIANTS)
  args.lengths = [int(x) for x in args.lengths.split(",") if x]
  args.packed = [int(x) for x in args.packed.split(",") if x]
  if args.packed and not args.data_dir:
    p.error("--packed needs --data_dir (it packs the real examples)")
  return args


def set_up_threads(args):
  """Applies the thread flags; returns the environment dict stored with every record."""
  if args.intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
  if args.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
  env = dict(onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
             intra=args.intra_op_threads, inter=args.inter_op_threads, tf=tf.__version__)
  print(f"threads intra {args.intra_op_threads or 'default'} "
        f"inter {args.inter_op_threads or 'default'}", flush=True)
  return env


def profile_record(step, name, b, length, logdir):
  """Profiles one step at [b, length], prints the time by op category; returns the record."""
  features, labels = fixed_batch(b, length)
  step(features, labels).numpy()
  per_step = profile_step(step, features, labels, logdir)
  wall = time_steps(step, [(features, labels)], 5) / 5
  print(f"profile of {name} at [{b}, {length}]: wall {wall * 1e3:.0f} ms/step, "
        f"op time {sum(per_step.values()) * 1e3:.0f} ms/step (both cores' ops summed)")
  for k, v in sorted(per_step.items(), key=lambda kv: -kv[1]):
    print(f"  {k:<42} {v * 1e3:7.1f} ms  {v / sum(per_step.values()):6.1%}")
  return dict(label=f"profile [{b},{length}]", variant=name, wall_s=wall, op_seconds=per_step)


def fixed_shape_records(steps, args):
  """Times every variant on one synthetic batch per length; returns summarise's records."""
  b, repeats = args.batch_size, args.repeats
  h, n, i = MINILM["hidden_size"], MINILM["num_layers"], MINILM["intermediate_size"]
  records = []
  for length in args.lengths:
    batch = [fixed_batch(b, length)]
    times, _ = interleaved(steps, lambda _: batch, args.rounds, repeats)
    tokens = b * length
    records += summarise(times, b * repeats, tokens * repeats, tokens * repeats,
                         model_flops(b, length, h, n, i) * repeats,
                         f"fixed [{b},{length}]", args.variants[0])
  return records


def bucket_set(spec, manifest):
  """(label, boundaries) of a --buckets spec: 'derived' (trainer.buckets, as the trainer
  derives them), 'every:N' (every multiple of N up to max_seq_length; every:1 pads each batch
  to its longest row) or an explicit list '16,32,64,128'."""
  from trainer import buckets as buckets_lib
  top = int(manifest.max_seq_length)
  if spec == "derived":
    bounds = buckets_lib.derive_boundaries(manifest.splits["train"].token_length, top)
  elif spec.startswith("every:"):
    n = int(spec[len("every:"):])
    return f"tweets every {n} to {top}", tuple(range(n, top, n)) + (top,)
  else:
    bounds = tuple(int(x) for x in spec.split(","))
  return f"tweets {','.join(map(str, bounds))}", tuple(bounds)


def batch_counts(rows, hidden, layers, intermediate):
  """(examples, real tokens, padded tokens, model FLOPs, shapes) of a list of batches, padded
  (input_mask) or packed (benchmarks.packing's segment ids and slot weights)."""
  examples = real = padded = flops = 0
  shapes = set()
  for features, _ in rows:
    ids = features["input_word_ids"]
    if packing.SEGMENT_IDS in features:
      examples += float(tf.reduce_sum(features[packing.SLOT_WEIGHTS]))
      real += int(tf.math.count_nonzero(features[packing.SEGMENT_IDS]))
    else:
      examples += int(ids.shape[0])
      real += float(tf.reduce_sum(features["input_mask"]))
    padded += int(tf.size(ids))
    flops += model_flops(int(ids.shape[0]), int(ids.shape[1]), hidden, layers, intermediate)
    shapes.add(tuple(ids.shape))
  return examples, real, padded, flops, len(shapes)


def packed_sets(rows, row_lengths):
  """{label: packed batches}: the examples of `rows` (padded batches) packed into rows of
  each length, in as many batches as `rows`."""
  examples = []
  for features, labels in rows:
    for ids, mask, label in zip(features["input_word_ids"].numpy(),
                                features["input_mask"].numpy(), labels.numpy()[:, 0]):
      examples.append((ids[mask > 0], float(label)))
  longest = max(len(ids) for ids, _ in examples)
  if min(row_lengths) < longest:
    raise SystemExit(f"bench_step: --packed={min(row_lengths)} is shorter than the longest "
                     f"example of these batches ({longest} tokens); use lengths >= {longest}")
  sets = {}
  for length in row_lengths:
    packed_rows = len(packing.pack([len(ids) for ids, _ in examples], length, MAX_PER_ROW))
    per_batch = -(-packed_rows // len(rows))
    sets[f"tweets packed into rows of {length}"] = packing.packed_batches(
        examples, length, per_batch, MAX_PER_ROW)
  return sets


def real_batch_records(steps, args):
  """Times every variant on real bucketed batches of args.data_dir, for each bucket set, and
  on the first set's examples packed into rows of each --packed length.

  All (variant, set) pairs are interleaved in one loop, so the sets compare like for like
  too; every set has the same batches' rows (the same examples), padded to its own
  boundaries or packed. Each record also gets the set's warm-up pass time (its shapes'
  one-time set-up; the steps were traced beforehand on a shape no set uses) and its speed
  over the first set's, per round.
  """
  from bertcore import schema
  b = args.batch_size
  h, n, i = MINILM["hidden_size"], MINILM["num_layers"], MINILM["intermediate_size"]
  manifest = schema.read_manifest(args.data_dir)
  sets = dict(bucket_set(spec, manifest) for spec in args.buckets or ["16,32,64,128"])
  batches = {label: real_batches(args.data_dir, bounds, b, args.num_batches)
             for label, bounds in sets.items()}
  first_label = next(iter(sets))
  pairs = {(name, label): steps[name] for label in sets for name in steps}
  for step in steps.values():
    step(*fixed_batch(b, 3)).numpy()       # traced here, not in the first set's warm-up
  if args.packed:
    packed = packed_sets(batches[first_label], args.packed)
    batches.update(packed)
    tiny = packing.packed_batches([(np.arange(1, 4, dtype=np.int32), 0.0)], 3, 1, MAX_PER_ROW)
    for name in steps:
      step = build_variant(name, b, packed=True)[0]
      step(*tiny[0]).numpy()
      pairs.update({(name, label): step for label in packed})
    sets.update({label: () for label in packed})
  times, first = interleaved(pairs, lambda key: batches[key[1]], args.rounds, 1)
  records = []
  for label, bounds in sets.items():
    examples, real, padded, flops, shapes = batch_counts(batches[label], h, n, i)
    own = {name: times[(name, label)] for name in steps}
    for rec in summarise(own, examples, real, padded, flops, label, args.variants[0]):
      key = (rec["variant"], label)
      rec.update(boundaries=list(bounds), shapes=shapes,
                 warmup_s=first[key], round_s=statistics.median(times[key]),
                 speedup_vs_first_set=statistics.median(
                     a / s for a, s in zip(times[(rec["variant"], first_label)], times[key])),
                 first_set=first_label)
      if not bounds:
        rec.update(packed_row_length=int(batches[label][0][0]["input_word_ids"].shape[1]),
                   max_per_row=MAX_PER_ROW)
      print(f"  {label}: {rec['shapes']} shapes, warm-up pass {rec['warmup_s']:.1f} s vs "
            f"{rec['round_s']:.1f} s a round; x{rec['speedup_vs_first_set']:.2f} vs {first_label}")
      records.append(rec)
  return records


def measure_peaks(dtypes):
  """{dtype: matmul FLOP/s} for each dtype name, printed."""
  peaks = {d: matmul_peak(getattr(tf, d)) for d in dtypes}
  print("matmul peak: " + ", ".join(f"{d} {v / 1e9:.1f} GFLOP/s" for d, v in peaks.items()),
        flush=True)
  return peaks


def main(argv=None):
  args = parse_args(argv)
  machine = common.machine()
  start_load = common.sample()
  env = set_up_threads(args)
  dtypes = sorted({dtype(v) for v in args.variants} | {"float32"})
  before = measure_peaks(dtypes)
  steps = {name: build_variant(name, args.batch_size)[0] for name in args.variants}
  records = []
  if args.profile:
    name = args.variants[0]
    records.append(profile_record(steps[name], name, args.batch_size, args.lengths[0],
                                  args.profile))
  records += fixed_shape_records(steps, args)
  if args.data_dir:
    records += real_batch_records(steps, args)
  after = measure_peaks(dtypes)
  peaks = apply_mfu(records, before, after)
  prov = common.provenance(machine, start_load, common.sample())
  for rec in records:
    rec.update(env, provenance=prov, command=["python", "-m", "benchmarks.bench_step"] +
               (argv if argv is not None else sys.argv[1:]))
    if "mfu" in rec:
      print(f"{rec['label']:<22} {rec['variant']:<12} MFU {rec['mfu']:.2f} of the "
            f"{rec['dtype']} peak {peaks[rec['dtype']]['used'] / 1e9:.1f} GFLOP/s "
            f"({peaks[rec['dtype']]['source']})")
  if args.out:
    for rec in records:
      common.append_record(args.out, rec)
  print(f"busy cores before {prov['busy_before']}, after {prov['busy_after']}"
        f"{'  LOADED' if prov['loaded'] else ''}")


if __name__ == "__main__":
  main()
