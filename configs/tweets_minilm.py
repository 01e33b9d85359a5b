"""The offline CPU demo: all-MiniLM-L6-v2 (converted) fine-tuned on real tweets.

  python -m trainer.convert --bundled_minilm --output_dir=runs/encoders/all-minilm-l6-v2
  python -m preprocess.run @configs/data/tweets_binary.args \\
      --input="$(python -m preprocess.datasets tweets)" \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --output_dir=runs/data/tweets_binary
  python -m trainer.task --config=configs/tweets_minilm.py \\
      --data_dir=runs/data/tweets_binary --model_dir=runs/models/tweets_minilm

Binary positive-vs-rest (about 18% positive). The 3-class variant, on data preprocessed with
configs/data/tweets_3class.args:
  python -m trainer.task --config=configs/tweets_minilm.py --config.model.head=multiclass \\
      --data_dir=runs/data/tweets_3class --model_dir=runs/models/tweets_minilm_3class
(positive_label also lets the binary head run one-vs-rest on the 3-class data.)
MiniLM is a mean-pooling sentence model whose pooler was never trained: mean pooling.
"""
from trainer.config import default_config


def get_config():
  config = default_config()
  config.encoder.kind = "checkpoint"
  config.encoder.dir = "runs/encoders/all-minilm-l6-v2"
  config.model.head = "binary"
  config.model.positive_label = "positive"
  config.model.pooling = "mean"
  config.model.dropout = 0.1
  config.train.global_batch_size = 32
  # One full pass (930 steps, all ~29,800 training tweets once); its time and test F1 per CPU kind:
  # benchmarks/results/quickstart.md (python -m benchmarks.bench_quickstart).
  # Shorter: --config.train.steps_per_epoch=300 --config.train.epochs=2 (the former recipe).
  config.train.steps_per_epoch = 0      # 0 = a full pass over the training split
  config.train.epochs = 1
  config.train.learning_rate = 5e-5
  config.train.warmup_fraction = 0.1
  # padding: the default auto pads each batch to its longest row here; with a compiled step
  # (TPU, --config.xla) it buckets to lengths derived from the manifest (16/24/.../64/128).
  config.train.checkpoint_every_steps = 300
  config.train.log_every_steps = 50
  # Sorted evaluation batches of 64 pad less than 128 (bench_eval in docs/benchmarks.md).
  config.eval.global_batch_size = 64
  config.precision = "auto"             # CPU: bfloat16 where native (AVX512_BF16 / AMX), else float32
  config.wandb.project = "bert-tweets-minilm"
  return config
