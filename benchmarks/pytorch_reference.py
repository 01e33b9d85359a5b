"""The PyTorch reference of the tweets recipe: the Hugging Face Trainer, same weights, data, recipe.

Runs in its own venv, never in the project's (torch is not a dependency of this package):

  python3 -m venv /tmp/torchenv      # anywhere outside this package's .venv
  /tmp/torchenv/bin/pip install torch==2.13.0 transformers accelerate scikit-learn numpy safetensors
  HF_HUB_OFFLINE=1 /tmp/torchenv/bin/python benchmarks/pytorch_reference.py \\
      --ids_dir=/tmp/tweets_ids --hf_dir="$(python -m trainer.convert --print_bundled_minilm)" \\
      --steps=200 --eval_batch=64 --out=/tmp/reference.json

--ids_dir holds export_split_ids.py's .npz files (both sides train on the same token ids),
--hf_dir a Hugging Face BERT directory. It imports nothing of this package; bench_vs_pytorch runs it.
The recipe mirrors configs/tweets_minilm.py: BertModel -> masked mean pooling -> dropout ->
Linear(hidden, 1), sigmoid cross-entropy, AdamW with linear warm-up and decay, weight decay 0.01
(not on biases and LayerNorm), clip 1.0; length-grouped batches padded to their longest row.
--out gets the steady training rate (after --skip_steps), the evaluation rate and per split
PR-AUC and the threshold sweep's F1 (as trainer/evaluation.py).
"""
import argparse
import json
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # before transformers loads: never download

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from torch import nn  # noqa: E402

SPLITS = ("train", "validation", "test")
THRESHOLDS = tuple(round(i / 100, 2) for i in range(1, 100))   # trainer/evaluation.py's sweep


def load_splits(ids_dir):
  """{split: [{input_ids, token_type_ids, labels}, ...]} from export_split_ids' <split>.npz."""
  out = {}
  for split in SPLITS:
    with np.load(os.path.join(ids_dir, f"{split}.npz")) as a:
      cuts = np.cumsum(a["lengths"])[:-1]
      out[split] = [{"input_ids": ids, "token_type_ids": types, "labels": np.float32(label)}
                    for ids, types, label in zip(np.split(a["input_ids"], cuts),
                                                 np.split(a["type_ids"], cuts), a["labels"])]
  return out


class PadCollator:
  """Pads a batch to its longest row (dynamic padding) and counts real / padded tokens."""

  def __init__(self):
    self.real = self.padded = 0

  def __call__(self, rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = np.zeros([len(rows), width], np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
      n = len(r["input_ids"])
      ids[i, :n], types[i, :n], mask[i, :n] = r["input_ids"], r["token_type_ids"], 1
    self.real += int(mask.sum())
    self.padded += mask.size
    return {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.float32)}


class MeanPoolClassifier(nn.Module):
  """BertModel -> masked mean of the last hidden states -> dropout -> Linear(hidden, 1)."""

  def __init__(self, hf_dir, dropout, pos_weight):
    super().__init__()
    self.bert = transformers.BertModel.from_pretrained(hf_dir, add_pooling_layer=False,
                                                       local_files_only=True)
    self.dropout = nn.Dropout(dropout)
    self.head = nn.Linear(self.bert.config.hidden_size, 1)
    # As tf_keras' TruncatedNormal(stddev=0.02): cut at two standard deviations.
    nn.init.trunc_normal_(self.head.weight, std=0.02, a=-0.04, b=0.04)
    nn.init.zeros_(self.head.bias)
    self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))

  def forward(self, input_ids, attention_mask, token_type_ids, labels=None):
    hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids).last_hidden_state   # [b, t, h]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)                  # [b, t, 1]
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)          # [b, h]
    logits = self.head(self.dropout(pooled)).float().squeeze(-1)          # [b]
    out = {"logits": logits}
    if labels is not None:
      out["loss"] = self.loss(logits, labels)
    return out


def training_arguments(args, out_dir):
  """TrainingArguments of the tweets recipe (the sampler's name moved in transformers 5)."""
  fields = transformers.TrainingArguments.__dataclass_fields__
  grouping = ({"group_by_length": True} if "group_by_length" in fields
              else {"train_sampling_strategy": "group_by_length"})
  return transformers.TrainingArguments(
      output_dir=out_dir, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
      per_device_eval_batch_size=args.eval_batch, learning_rate=args.learning_rate,
      lr_scheduler_type="linear", warmup_steps=int(args.warmup_fraction * args.steps),
      weight_decay=0.01, max_grad_norm=1.0, adam_epsilon=1e-8, seed=args.seed,
      bf16=args.bf16, use_cpu=True, dataloader_num_workers=0, report_to="none",
      save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
      label_names=["labels"], **grouping)


class StepTimer(transformers.TrainerCallback):
  """Wall time of the training steps after the first `skip` (tracing, allocator warm-up)."""

  def __init__(self, skip):
    self.skip, self.start, self.end, self.steps = skip, None, None, 0

  def on_step_end(self, args, state, control, **kwargs):
    if state.global_step == self.skip:
      self.start = time.perf_counter()
    elif state.global_step > self.skip:
      self.end, self.steps = time.perf_counter(), state.global_step - self.skip

  def examples_per_sec(self, batch_size):
    return self.steps * batch_size / (self.end - self.start) if self.steps else None


def split_metrics(labels, probs, tuned=None):
  """pr_auc, best_f1 and best_threshold of the sweep (ties nearest 0.5, as our trainer), f1 at
  0.5 and, given a tuned threshold, f1_tuned."""
  f1 = [float(skm.f1_score(labels, (probs >= np.float32(t)).astype(int), zero_division=0))
        for t in THRESHOLDS]
  best_f1 = max(f1)
  best = min((t for t, f in zip(THRESHOLDS, f1) if f == best_f1), key=lambda t: (abs(t - 0.5), t))
  out = {"pr_auc": float(skm.average_precision_score(labels, probs)), "best_f1": best_f1,
         "best_threshold": best, "f1": f1[THRESHOLDS.index(0.5)],
         "num_examples": int(len(labels))}
  if tuned is not None:
    out["f1_tuned"] = f1[THRESHOLDS.index(tuned)]
  return out


def predict(trainer, dataset):
  """(labels int [n], P(positive) float32 [n], wall seconds). The labels come with the
  predictions: transformers 5 groups the evaluation rows by length too, out of dataset order."""
  start = time.perf_counter()
  out = trainer.predict(dataset)
  seconds = time.perf_counter() - start
  probs = torch.sigmoid(torch.from_numpy(np.asarray(out.predictions, np.float32))).numpy()
  return np.asarray(out.label_ids).astype(int), probs, seconds


def run(args):
  """Trains --steps steps, evaluates validation and test; returns the JSON-able record."""
  start = time.perf_counter()
  torch.set_num_threads(args.threads)
  transformers.set_seed(args.seed)   # the head's initialisation, before the Trainer exists
  data = load_splits(args.ids_dir)
  collator, timer = PadCollator(), StepTimer(args.skip_steps)
  trainer = transformers.Trainer(
      model=MeanPoolClassifier(args.hf_dir, args.dropout, args.pos_weight),
      args=training_arguments(args, os.path.join(args.work_dir, "trainer")),
      train_dataset=data["train"], data_collator=collator, callbacks=[timer])
  train_start = time.perf_counter()
  trainer.train()
  train_seconds = time.perf_counter() - train_start
  efficiency = collator.real / max(collator.padded, 1)
  mean_tokens = collator.real / (args.steps * args.batch_size)
  outputs, speed = {}, {}
  for split in ("validation", "test"):
    *outputs[split], seconds = predict(trainer, data[split])
    speed[split] = len(data[split]) / seconds
  validation = split_metrics(*outputs["validation"])
  test = split_metrics(*outputs["test"], tuned=validation["best_threshold"])
  return {
      "variant": "pytorch_bf16" if args.bf16 else "pytorch", "steps": args.steps,
      "batch_size": args.batch_size, "eval_batch": args.eval_batch, "threads": args.threads,
      "seed": args.seed, "precision": "bfloat16_autocast" if args.bf16 else "float32",
      "train_examples_per_sec": timer.examples_per_sec(args.batch_size),
      "train_padding_efficiency": efficiency, "train_mean_tokens": mean_tokens,
      "train_seconds": train_seconds, "eval_examples_per_sec": speed,
      "validation": validation, "test": test, "threshold": validation["best_threshold"],
      "wall_seconds": time.perf_counter() - start,
      "torch": torch.__version__, "transformers": transformers.__version__,
      "cpu": platform.processor() or platform.machine(),
  }


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--ids_dir", required=True, help="export_split_ids.py's output")
  p.add_argument("--hf_dir", required=True, help="Hugging Face BERT dir (safetensors)")
  p.add_argument("--out", required=True, help="JSON record written here")
  p.add_argument("--work_dir", default="/tmp/pytorch_reference", help="the Trainer's output_dir")
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--skip_steps", type=int, default=20, help="steps left out of the rate")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--eval_batch", type=int, default=64, help="as configs/tweets_minilm.py")
  p.add_argument("--learning_rate", type=float, default=5e-5)
  p.add_argument("--warmup_fraction", type=float, default=0.1)
  p.add_argument("--dropout", type=float, default=0.1, help="before the head")
  p.add_argument("--pos_weight", type=float, default=1.0)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--seed", type=int, default=42)
  p.add_argument("--bf16", action="store_true", help="autocast bfloat16 (default float32)")
  return p


def main(argv=None):
  parser = make_parser()
  args = parser.parse_args(argv)
  if args.steps <= args.skip_steps:
    parser.error(f"--steps ({args.steps}) must exceed --skip_steps ({args.skip_steps})")
  record = run(args)
  with open(args.out, "w") as f:
    json.dump(record, f, indent=1)
  print(f"{record['variant']}: train {record['train_examples_per_sec']:.1f} examples/s, eval "
        f"{record['eval_examples_per_sec']}, test {record['test']}", flush=True)


if __name__ == "__main__":
  main()
