"""A 3-layer student of the main job's model (configs/tweets_minilm.py), for cheaper scoring.

  python -m trainer.task --config=configs/tweets_minilm.py \\
      --data_dir=runs/data/tweets_binary --model_dir=runs/models/tweets_minilm
  python -m trainer.task --config=configs/distill_tweets.py \\
      --config.distill.teacher=runs/models/tweets_minilm \\
      --data_dir=runs/data/tweets_binary --model_dir=runs/models/tweets_minilm_student

The student keeps layers 1, 3 and 5 of MiniLM's 6 (every other, as DistilBERT did with BERT),
the embeddings, the pooler and the fine-tuned head, and learns the teacher's probabilities
softened at temperature 2 together with the labels (docs/distillation.md). Its encoder is the
teacher's (config.json of the teacher's run); the recipe otherwise is the main job's. The
3-class variant: add --config.model.head=multiclass, with the 3-class teacher and data.
"""
import os

from trainer.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "tweets_minilm.py"))
  config.distill.layers = (1, 3, 5)
  config.distill.temperature = 2.0
  config.distill.label_weight = 0.5
  config.wandb.project = "bert-tweets-minilm"
  return config
