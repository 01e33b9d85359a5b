"""Exact data-set statistics for the manifest, PNG histograms, and optional W&B logging.

Statistics are exact, not sampled: every length is kept as a histogram {value: count} (token
lengths are bounded by max_seq_length; word and character counts take few distinct values), so
shard statistics merge by addition and percentiles are exact (nearest-rank).
"""
import collections
import io
import math
import os
import posixpath

import tensorflow as tf

from bertcore import files
from bertcore import wandb_mode

PERCENTILES = (50, 90, 95, 99)
HISTOGRAMS = ("token_length", "words", "chars")
PLOTS = {"token_length": "plots/token_length.png", "words": "plots/words.png",
         "chars": "plots/chars.png"}
LABEL_PLOT = "plots/label_distribution.png"


def empty_stats():
  """Statistics of no rows; `add_row` / `merge_stats` fill them."""
  return {"rows": 0, "truncated": 0, "long_text": 0,
          "label_histogram": collections.Counter(),
          "token_length": collections.Counter(),
          "words": collections.Counter(), "chars": collections.Counter()}


def add_row(stats, label_names, token_length, truncated, long_text, words, chars):
  """Counts one written row. token_length: pieces + special tokens before truncation."""
  stats["rows"] += 1
  stats["truncated"] += int(truncated)
  stats["long_text"] += int(long_text)
  for name in label_names:
    stats["label_histogram"][name] += 1
  stats["token_length"][token_length] += 1
  stats["words"][words] += 1
  stats["chars"][chars] += 1


def add_rows(stats, label_names, token_lengths, truncated, long_text, words, chars):
  """Counts many written rows at once (Counter counts an iterable in C).

  label_names: one tuple of names per row; the other arguments: one value per row.
  """
  stats["rows"] += len(token_lengths)
  stats["truncated"] += sum(truncated)
  stats["long_text"] += sum(long_text)
  for names, n in collections.Counter(label_names).items():
    for name in names:
      stats["label_histogram"][name] += n
  stats["token_length"].update(token_lengths)
  stats["words"].update(words)
  stats["chars"].update(chars)


def merge_stats(into, other):
  """Adds `other` into `into` (both from empty_stats) and returns `into`."""
  for key in ("rows", "truncated", "long_text"):
    into[key] += other[key]
  for key in ("label_histogram",) + HISTOGRAMS:
    into[key].update(other[key])
  return into


def to_json(stats):
  """JSON-safe copy (histogram keys become strings)."""
  return {k: ({str(kk): vv for kk, vv in sorted(v.items())} if isinstance(v, dict) else v)
          for k, v in stats.items()}


def from_json(data):
  stats = empty_stats()
  for key in ("rows", "truncated", "long_text"):
    stats[key] = data[key]
  stats["label_histogram"].update(data["label_histogram"])
  for key in HISTOGRAMS:
    stats[key].update({int(k): v for k, v in data[key].items()})
  return stats


def summarize(histogram):
  """{value: count} -> mean, nearest-rank p50/p90/p95/p99 and max (None for no values)."""
  total = sum(histogram.values())
  keys = ["mean"] + [f"p{p}" for p in PERCENTILES] + ["max"]
  if total == 0:
    return dict.fromkeys(keys)
  values = sorted(histogram.items())
  summary = {"mean": round(sum(v * n for v, n in values) / total, 4)}
  for p in PERCENTILES:
    rank = max(1, math.ceil(p / 100 * total))  # The smallest value with >= p% at or below it.
    seen = 0
    for value, count in values:
      seen += count
      if seen >= rank:
        summary[f"p{p}"] = value
        break
  summary["max"] = values[-1][0]
  return summary


def pieces_cut(token_lengths, record_length):
  """{word pieces cut: rows} of the truncated rows, from a {token_length: rows} histogram.

  A truncated row is cut to exactly record_length ids, and token_length counts the ids
  before truncation, so it lost token_length - record_length word pieces.
  """
  return collections.Counter({length - record_length: n for length, n in token_lengths.items()
                              if length > record_length})


def windows_histogram(token_lengths, geometry):
  """{windows: documents} from a {token_length: rows} histogram of single texts ([CLS] pieces
  [SEP]: token_length - 2 pieces, of which the windows read at most geometry.max_pieces)."""
  windows = collections.Counter()
  for length, n in token_lengths.items():
    windows[geometry.num_windows(length - 2)] += n
  return windows


def split_summary(stats, labels, shard_rows, record_length, geometry=None):
  """The manifest's entry for one split.

  Args:
    stats: from empty_stats/merge_stats. labels: the class names (histogram has every one, 0
      included). shard_rows: {shard file name: rows}. record_length: the most ids a record
      holds (settings.Settings.record_length). geometry: the windows.Geometry of chunked
      data, else None (then `windows` is empty).
  """
  return {
      "rows": stats["rows"],
      "shards": dict(sorted(shard_rows.items())),
      "label_histogram": {name: stats["label_histogram"].get(name, 0) for name in labels},
      "token_length": summarize(stats["token_length"]),
      "truncated": stats["truncated"],
      "truncated_pieces": summarize(pieces_cut(stats["token_length"], record_length)),
      "windows": ({} if geometry is None else
                  summarize(windows_histogram(stats["token_length"], geometry))),
      "long_text": stats["long_text"],
      "words": summarize(stats["words"]),
      "chars": summarize(stats["chars"]),
  }


def truncation_summary(manifest):
  """One clause of the summary line: how many of each split's rows were truncated and how many
  word pieces those rows lost, as counts (a share would round a handful of rows to 0.0%), e.g.
  `truncated (head_tail, max_seq_length 128): train 6 of 29,790 rows (pieces cut among them:
  mean 52.8, p90 137), validation 0 of 3,714 rows, test 0 of 3,739 rows`.
  """
  parts = []
  for split, info in manifest.splits.items():
    part = f"{split} {info.truncated:,} of {info.rows:,} rows"
    cut = info.truncated_pieces
    if info.truncated and cut.get("mean") is not None:  # Old manifests do not record it.
      part += f" (pieces cut among them: mean {cut['mean']:.1f}, p90 {cut['p90']})"
    parts.append(part)
  if manifest.chunking:
    g = manifest.chunking
    cap = (f"chunked: {g['max_pieces']:,} word pieces = {g['max_chunks']} windows of "
           f"{g['chunk_length']} ids, overlap {g['chunk_overlap']}")
  else:
    cap = f"max_seq_length {manifest.max_seq_length}"
  return f"truncated ({manifest.truncation}, {cap}): " + ", ".join(parts)


def windows_summary(manifest):
  """One clause of the summary line for chunked data: the windows each split's documents are
  read in, e.g. `windows per document: train mean 1.6, p90 3, max 8, validation ...`."""
  parts = []
  for split, info in manifest.splits.items():
    w = info.windows
    if w.get("mean") is None:  # An empty split.
      parts.append(f"{split} none")
    else:
      parts.append(f"{split} mean {w['mean']:.2f}, p90 {w['p90']}, max {w['max']}")
  return "windows per document: " + ", ".join(parts)


# A discovered label this rare is more likely a typo (a `7` in a 0/1 column) than a class.
RARE_LABEL_ROWS = 5
RARE_LABEL_SHARE = 0.001


def label_counts(manifest):
  """{label: rows carrying it, over all splits}, in label-id order."""
  return {name: sum(split.label_histogram.get(name, 0) for split in manifest.splits.values())
          for name in manifest.labels}


def rare_labels(counts, rows):
  """The labels of `counts` on fewer than RARE_LABEL_ROWS rows or RARE_LABEL_SHARE of `rows`."""
  return [name for name, count in counts.items()
          if count < RARE_LABEL_ROWS or count < RARE_LABEL_SHARE * rows]


def rare_label_warning(name, counts, rows):
  """One line: how rare the discovered label `name` is, and the flags that fix a typo."""
  common = ",".join(n for n in counts if n not in rare_labels(counts, rows))
  return (f"warning: discovered label {name!r} is on only {counts[name]} of {rows} rows "
          f"({counts[name] / max(rows, 1):.2%}); if it is a typo, fix the classes with "
          f"--labels={common} (other values are then rejected as unknown_label) or merge it "
          f"with --label_map=<raw>:<class>,...")


def _save(plt, figure, axes, path, legend):
  """Lays out, writes (PNG, through gfile) and closes one figure."""
  if legend:
    axes.legend()
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
  files.write_atomic(path, buffer.getvalue())
  plt.close(figure)


def write_plots(output_dir, split_stats, labels):
  """Writes the label distribution and length histograms (log y) per split as PNG files.

  Returns the plot paths relative to output_dir.
  """
  import matplotlib
  matplotlib.use("Agg")  # No display; safe on workers and in tests.
  from matplotlib import pyplot as plt

  tf.io.gfile.makedirs(posixpath.join(output_dir, "plots"))
  written = []
  splits = [s for s in split_stats if split_stats[s]["rows"]]

  figure, axes = plt.subplots(figsize=(7, 4))
  width = 0.8 / max(1, len(splits))
  for i, split in enumerate(splits):
    counts = [split_stats[split]["label_histogram"].get(name, 0) for name in labels]
    axes.bar([j + i * width for j in range(len(labels))], counts, width=width, label=split)
  axes.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
  axes.set_xticklabels(labels, rotation=30 if len(labels) > 6 else 0)
  axes.set_yscale("log")
  axes.set_ylabel("rows (log)")
  axes.set_title("label distribution" + ("" if labels else " (unlabeled input)"))
  _save(plt, figure, axes, posixpath.join(output_dir, LABEL_PLOT), legend=bool(splits))
  written.append(LABEL_PLOT)

  titles = {"token_length": "word pieces + special tokens, before truncation",
            "words": "words per row (whitespace split)", "chars": "characters per row"}
  for key, relative in PLOTS.items():
    figure, axes = plt.subplots(figsize=(7, 4))
    for split in splits:
      histogram = split_stats[split][key]
      values = sorted(histogram)
      axes.hist(values, bins=min(60, max(1, len(values))), weights=[histogram[v] for v in values],
                histtype="step", log=True, label=split)
    axes.set_xlabel(titles[key])
    axes.set_ylabel("rows (log)")
    _save(plt, figure, axes, posixpath.join(output_dir, relative), legend=bool(splits))
    written.append(relative)
  return written


def wandb_enabled(project):
  """W&B logging is on only with a project and a mode that can log (bertcore.wandb_mode)."""
  return bool(project) and wandb_mode.resolve_mode() != "disabled"


def log_to_wandb(project, manifest, output_dir):
  """Logs a schema.Manifest's statistics and its plots to W&B (the API key is never read here)."""
  import wandb
  from PIL import Image

  m = manifest
  config = {"input_files": m.input_files, "labels": m.labels, "max_seq_length": m.max_seq_length,
            "truncation": m.truncation, "chunking": m.chunking,
            "num_shards": m.num_shards, "split_fractions": m.split_fractions,
            "vocab_sha256": m.vocab_sha256, "lower_case": m.lower_case}
  run = wandb.init(project=project, job_type="preprocess", config=config,
                   dir=os.environ.get("WANDB_DIR"))
  try:
    summary = {"rows_read": m.rows_read, "rows_written": m.rows_written,
               "rows_rejected_total": m.rows_rejected_total}
    for reason, n in m.rows_rejected.items():
      summary[f"rejected/{reason}"] = n
    for split, info in m.splits.items():
      summary[f"{split}/rows"] = info.rows
      summary[f"{split}/truncated"] = info.truncated
      for name, n in info.label_histogram.items():
        summary[f"{split}/label/{name}"] = n
      for key in HISTOGRAMS + ("windows",):  # windows: {} unless chunked
        for stat, value in getattr(info, key).items():
          if value is not None:
            summary[f"{split}/{key}/{stat}"] = value
    images = {}
    for relative in m.plots:
      with tf.io.gfile.GFile(posixpath.join(output_dir, relative), "rb") as f:
        images[relative] = wandb.Image(Image.open(io.BytesIO(f.read())))
    run.log({**summary, **images})
    run.summary.update(summary)
  finally:
    run.finish()
  return run
