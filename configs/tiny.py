"""A tiny random encoder that trains in seconds: for tests and smoke runs of the whole loop.

  python -m trainer.task --config=configs/tiny.py --data_dir=<preprocessed dir> \
      --model_dir=/tmp/tiny_run --strategy=one_device

The encoder is randomly initialised (2 layers, hidden 32), its vocabulary size taken from the
data; give --config.encoder.vocab_file=<the data's vocab.txt> to have it checked, or let the
export find the vocabulary the preprocessing job recorded in the manifest.
"""
from trainer.config import default_config


def get_config():
  config = default_config()
  config.encoder.update(kind="random", hidden_size=32, num_layers=2, num_heads=2,
                        intermediate_size=64, max_position_embeddings=128, dropout=0.0)
  config.model.head = "binary"
  config.model.pooling = "mean"
  config.model.dropout = 0.0
  config.train.global_batch_size = 16
  config.train.epochs = 2
  config.train.learning_rate = 5e-3
  config.train.warmup_fraction = 0.0
  config.train.bucket_boundaries = (8, 16, 32)
  config.train.checkpoint_every_steps = 8
  config.train.log_every_steps = 4
  config.eval.global_batch_size = 32
  config.precision = "float32"
  config.wandb.mode = "auto"
  return config
