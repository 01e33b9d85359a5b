"""The tutorial's setup: BERT-Base uncased from TF-Hub, fine-tuned on Quora Insincere Questions.

  python -m trainer.task --config=configs/quora_bert_base.py --strategy=mirrored \\
      --data_dir=gs://<bucket>/quora_tfrecords --model_dir=gs://<bucket>/runs/quora_bert_base

The data dir must be preprocessed with this encoder's vocabulary (preprocess.run
--hub_handle=<same handle>, max_seq_length 128); the trainer refuses a vocabulary mismatch.
Quora is ~6% insincere: the positive-class weight can be raised with
--config.train.pos_weight=3.0, and the exported threshold is the F1-best one on validation.
"""
from trainer.config import default_config


def get_config():
  config = default_config()
  config.encoder.kind = "hub"
  config.encoder.hub_handle = "https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4"
  config.model.head = "binary"          # one sigmoid, as the tutorial
  config.model.pooling = "cls"          # the pooled_output the tutorial uses
  config.model.dropout = 0.5
  config.train.global_batch_size = 32
  config.train.epochs = 5
  config.train.learning_rate = 2e-5
  config.train.warmup_fraction = 0.1
  config.train.weight_decay = 0.01
  config.train.bucket_boundaries = (16, 32, 64, 128)   # max_seq_length 128 in the manifest
  config.train.checkpoint_every_steps = 1000
  config.train.log_every_steps = 100
  config.eval.global_batch_size = 128
  config.precision = "auto"             # float16 on GPU, bfloat16 on TPU
  config.wandb.project = "bert-quora-insincere"
  return config
