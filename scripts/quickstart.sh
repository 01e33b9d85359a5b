#!/usr/bin/env bash
# The main job on the embedded offline default, end to end on CPU:
# real all-MiniLM-L6-v2 weights (converted) fine-tuned on real tweets (positive vs rest).
# Everything lands under runs/ (or $RUNS); W&B runs offline (nothing leaves the machine).
# TRAIN_FLAGS adds trainer flags to step 3, e.g. TRAIN_FLAGS=--config.precision=float32.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUNS=${RUNS:-runs}
ENCODER=$RUNS/encoders/all-minilm-l6-v2
DATA=$RUNS/data/tweets_binary
MODEL=$RUNS/models/tweets_minilm
export WANDB_MODE=${WANDB_MODE:-offline} WANDB_DIR=${WANDB_DIR:-$RUNS}

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

step "1/5 convert the Hugging Face checkpoint to a Model Garden encoder -> $ENCODER"
$PY -m trainer.convert --bundled_minilm --output_dir="$ENCODER"

step "2/5 preprocess the tweets with Beam (DirectRunner, offline) -> $DATA"
$PY -m preprocess.run @configs/data/tweets_binary.args \
  --input="$($PY -m preprocess.datasets tweets)" --encoder_dir="$ENCODER" --output_dir="$DATA"

step "3/5 fine-tune, evaluate every epoch, export -> $MODEL"
$PY -m trainer.task --config=configs/tweets_minilm.py --config.encoder.dir="$ENCODER" \
  --data_dir="$DATA" --model_dir="$MODEL" --strategy=one_device ${TRAIN_FLAGS:-}

step "4/5 predictions of the exported model on a few sentences (configs/data/example_tweets.csv)"
$PY -m serving.predict --model="$MODEL/export" --input=configs/data/example_tweets.csv \
  --id_column=id --text_column=text --output="$MODEL/example_predictions.csv"
$PY - "$MODEL/example_predictions.csv" <<'PYEOF'
import csv, sys
texts = {r["id"]: r["text"] for r in csv.DictReader(open("configs/data/example_tweets.csv"))}
for r in csv.DictReader(open(sys.argv[1])):
  print(f"  {r['label']:>9}  p(positive)={float(r['probability']):.3f}  {texts[r['id']]}")
PYEOF

step "5/5 where the results are"
echo "  data manifest + plots:   $DATA/manifest.json  $DATA/plots/"
echo "  evaluation:              $MODEL/eval_results.json  $MODEL/plots/"
echo "  exported SavedModel:     $MODEL/export"
echo "  TensorBoard:             $MODEL/tensorboard   (tensorboard --logdir $MODEL/tensorboard)"
echo "  W&B offline run:         $(ls -d "$WANDB_DIR"/wandb/offline-run-* 2>/dev/null | tail -1)   (wandb sync <dir> to upload)"
