"""all-MiniLM-L6-v2 (converted) fine-tuned on drugs.com reviews: a small long-text task.

  python -m preprocess.run @configs/data/drugreviews_binary.args \\
      --input="$(python -m preprocess.datasets drugreviews-train)" \\
      --test_input="$(python -m preprocess.datasets drugreviews-test)" \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --output_dir=runs/data/drugreviews_binary
  python -m trainer.task --config=configs/drugreviews_minilm.py \\
      --data_dir=runs/data/drugreviews_binary --model_dir=runs/models/drugreviews_minilm

Binary positive-vs-rest (~64% positive). The 3-class variant, on data preprocessed with
configs/data/drugreviews_3class.args:
  python -m trainer.task --config=configs/drugreviews_minilm.py --config.model.head=multiclass \\
      --data_dir=runs/data/drugreviews_3class --model_dir=runs/models/drugreviews_minilm_3class
max_seq_length comes from the data (the recipes use 128, which cuts a large share of the
reviews; the manifest's token-length percentiles and truncation counts say how many). What the
long-text runs found (bench_long_text in docs/benchmarks.md): fine-tuned MiniLM did not beat
TF-IDF + logistic regression by a clear margin here, the longer views ranked at least as well as
head truncation, and layer-wise learning-rate decay gave no gain.
The export records the data's --unescape_html, so `python -m serving.predict --delimiter=tab`
on the raw TSV unescapes as training did.
"""
from trainer.config import default_config


def get_config():
  config = default_config()
  config.encoder.kind = "checkpoint"
  config.encoder.dir = "runs/encoders/all-minilm-l6-v2"
  config.model.head = "binary"
  config.model.positive_label = "positive"
  config.model.pooling = "mean"         # MiniLM's own; its pooler was never trained
  config.model.dropout = 0.1
  config.train.global_batch_size = 32
  # ~530 training reviews = 16 steps of 32 per full pass: several passes (each a fresh
  # shuffle), evaluating the 67 validation reviews after each one (a few seconds) to keep the
  # best; 10 x 16 = 160 steps (6 passes were still learning).
  config.train.steps_per_epoch = 0
  config.train.epochs = 10
  config.train.learning_rate = 5e-5
  config.train.warmup_fraction = 0.1
  config.train.checkpoint_every_steps = 0  # epoch ends only: an epoch is ~1 minute on 2 cores
  config.train.log_every_steps = 8
  config.eval.global_batch_size = 64
  config.precision = "auto"             # CPU: bfloat16 where native (AVX512_BF16 / AMX), else float32
  config.wandb.project = "bert-drugreviews-minilm"
  return config
