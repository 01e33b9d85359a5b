"""all-MiniLM-L6-v2 (converted) on 20 Newsgroups: documents longer than the window (issue 38).

  python -m preprocess.run @configs/data/newsgroups.args \\
      --input="$(python -m preprocess.datasets newsgroups-train)" \\
      --test_input="$(python -m preprocess.datasets newsgroups-test)" \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --output_dir=runs/data/newsgroups
  python -m trainer.task --config=configs/newsgroups_minilm.py \\
      --data_dir=runs/data/newsgroups --model_dir=runs/models/newsgroups_minilm

The recipe's data holds whole posts (up to 8 windows of 256 ids); the trainer reads them in
those windows and pools them (model.chunk_pooling). Windows of 128 from the same data:
--config.model.chunk_length=128. On data preprocessed without --max_chunks (texts truncated,
e.g. --max_seq_length=512 --truncation=head_tail), add --config.model.chunk_pooling= (empty).
Truncation against chunking on this data: docs/benchmarks.md (python -m benchmarks.bench_longdoc).
"""
from trainer.config import default_config


def get_config():
  config = default_config()
  config.encoder.kind = "checkpoint"
  config.encoder.dir = "runs/encoders/all-minilm-l6-v2"
  config.model.head = "multiclass"
  config.model.pooling = "mean"         # MiniLM's pooler was never trained
  config.model.dropout = 0.1
  config.model.chunk_pooling = "mean"
  config.train.global_batch_size = 16
  config.train.epochs = 1
  config.train.learning_rate = 5e-5
  config.train.warmup_fraction = 0.1
  config.train.checkpoint_every_steps = 300
  config.train.log_every_steps = 50
  config.eval.global_batch_size = 32
  config.precision = "auto"             # CPU: bfloat16 where native (AVX512_BF16 / AMX), else float32
  config.wandb.project = "bert-newsgroups-minilm"
  return config
