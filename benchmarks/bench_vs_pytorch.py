"""This package vs the PyTorch reference (Hugging Face Trainer) on the same machine, interleaved.

  WANDB_MODE=disabled python benchmarks/bench_vs_pytorch.py --torch_python=/tmp/torchenv/bin/python \\
      --data_dir=runs/data/tweets_binary --encoder_dir=runs/encoders/all-minilm-l6-v2 \\
      --hf_dir="$(python -m trainer.convert --print_bundled_minilm)" \\
      --steps=200 --rounds=1 --variants=pytorch,ours_f32,ours

The torch venv is made once, outside this package (benchmarks/pytorch_reference.py's docstring
has the line). Variants, each a fresh subprocess, run interleaved (A B C A B C ...) so that a
change of machine load hits every variant alike:
  pytorch       benchmarks/pytorch_reference.py under --torch_python (float32, --threads 2)
  pytorch_bf16  the same with bfloat16 autocast
  ours_f32      `python -m trainer.task --config=configs/tweets_minilm.py` in float32
  ours          the same with the recipe's precision (auto: bfloat16 on CPUs with AVX512_BF16)
Every run trains --steps steps (one epoch of --steps; the schedule spans them) and then
evaluates validation and test. Both sides train on the same token ids and labels: the
reference reads them from export_split_ids.py's .npz files, written once into --work_dir.
Figures per run:
  train ex/s    steady state, the first --skip_steps steps left out (ours: its progress lines,
                logged every --skip_steps steps, as bench_train_speed.py; the reference: a
                TrainerCallback)
  eval ex/s     validation + test examples / their wall seconds (ours: eval_results.json's
                final.eval_examples_per_sec, tracing of new shapes included; the reference:
                trainer.predict)
  wall          the whole command, start-up, checkpoint (ours) and evaluation included
  test PR-AUC, F1 at the threshold tuned on validation, best F1
Printed: one line per run, then per variant the medians and the median of per-round ratios vs
the first variant (speeds: above 1 = faster than it; wall: above 1 = longer). One JSON line per
run is appended to --out; the logs and model dirs stay in --work_dir.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

from benchmarks import bench_learning_curve, bench_train_speed  # noqa: E402

REPO = bench_train_speed.REPO
OURS = {"ours_f32": ["--config.precision=float32"], "ours": []}
REFERENCE = {"pytorch": [], "pytorch_bf16": ["--bf16"]}
COLUMNS = ("train_eps", "eval_eps", "wall_seconds")   # ratios vs the first variant


def ours_command(args, model_dir, flags):
  """The trainer.task command line of one run: --steps steps, then the final evaluation."""
  return [sys.executable, "-m", "trainer.task", "--config=configs/tweets_minilm.py",
          f"--config.encoder.dir={args.encoder_dir}", f"--data_dir={args.data_dir}",
          f"--model_dir={model_dir}", "--strategy=one_device",
          f"--config.train.steps_per_epoch={args.steps}", "--config.train.epochs=1",
          f"--config.train.log_every_steps={args.skip_steps}",
          "--config.train.checkpoint_every_steps=0", "--config.export=False"] + flags


def reference_command(args, out_json, flags):
  """The pytorch_reference.py command line of one run."""
  return [args.torch_python, os.path.join(REPO, "benchmarks", "pytorch_reference.py"),
          f"--ids_dir={args.ids_dir}", f"--hf_dir={args.hf_dir}", f"--out={out_json}",
          f"--work_dir={os.path.dirname(out_json)}", f"--steps={args.steps}",
          f"--skip_steps={args.skip_steps}", f"--threads={args.threads}"] + flags


def run_logged(command, log_path):
  """Runs command with its output in log_path; (wall seconds, stdout text) or None if it failed."""
  env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
  start = time.perf_counter()
  with open(log_path, "w") as log:
    done = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  seconds = time.perf_counter() - start
  if done.returncode:
    print(f"  failed (exit {done.returncode}): see {log_path}", flush=True)
    return None
  with open(log_path) as f:
    return seconds, f.read()


def combined_rate(rates, counts):
  """Examples/s over several passes: sum(counts) / sum(count / rate); None if any is missing."""
  if not rates or any(rates.get(s) is None for s in counts):
    return None
  return sum(counts.values()) / sum(counts[s] / rates[s] for s in counts)


def read_reference(path):
  """The common record (see parse_ours) of pytorch_reference.py's JSON output."""
  with open(path) as f:
    ref = json.load(f)
  counts = {s: ref[s]["num_examples"] for s in ("validation", "test")}
  return {"train_eps": ref["train_examples_per_sec"],
          "train_padding_efficiency": ref["train_padding_efficiency"],
          "eval_eps": combined_rate(ref["eval_examples_per_sec"], counts),
          "eval_eps_by_split": ref["eval_examples_per_sec"],
          "test_pr_auc": ref["test"]["pr_auc"], "test_f1_tuned": ref["test"]["f1_tuned"],
          "test_best_f1": ref["test"]["best_f1"], "threshold": ref["threshold"]}


def parse_ours(model_dir, stdout):
  """The common record of one trainer.task run: train_eps, train_padding_efficiency, eval_eps,
  eval_eps_by_split, test_pr_auc, test_f1_tuned, test_best_f1, threshold (None if absent)."""
  train = bench_train_speed.steady_state(stdout) or (None, None)
  quality = bench_learning_curve.read_final(model_dir) or {}
  with open(os.path.join(model_dir, "eval_results.json")) as f:
    final = json.load(f)["final"]
  rates = final.get("eval_examples_per_sec") or {}
  counts = {s: final[s]["num_examples"] for s in ("validation", "test") if s in final}
  return {"train_eps": train[0], "train_padding_efficiency": train[1],
          "eval_eps": combined_rate(rates, counts), "eval_eps_by_split": rates,
          "test_pr_auc": quality.get("test/pr_auc"), "test_f1_tuned": quality.get("test/f1_tuned"),
          "test_best_f1": quality.get("test/best_f1"), "threshold": quality.get("threshold")}


def run_variant(args, name, round_dir):
  """Runs one variant once; its common record plus wall_seconds, or None if it failed."""
  log = os.path.join(round_dir, f"{name}.log")
  if name in REFERENCE:
    out_json = os.path.join(round_dir, name, "reference.json")
    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    done = run_logged(reference_command(args, out_json, REFERENCE[name]), log)
    record = done and read_reference(out_json)
  else:
    model_dir = os.path.join(round_dir, name)
    done = run_logged(ours_command(args, model_dir, OURS[name]), log)
    record = done and parse_ours(model_dir, done[1])
  return record and dict(record, wall_seconds=done[0])


def export_ids(args):
  """Writes the token ids / labels .npz files once (export_split_ids.py); returns their dir."""
  ids_dir = os.path.join(args.work_dir, "ids")
  if not all(os.path.exists(os.path.join(ids_dir, f"{s}.npz"))
             for s in ("train", "validation", "test")):
    command = [sys.executable, os.path.join(REPO, "benchmarks", "export_split_ids.py"),
               f"--data_dir={args.data_dir}", f"--output_dir={ids_dir}",
               f"--positive_label={args.positive_label}"]
    if run_logged(command, os.path.join(args.work_dir, "export_ids.log")) is None:
      raise SystemExit("error: exporting the token ids failed")
  return ids_dir


def fmt(value, spec):
  return "-" if value is None else format(value, spec)


def run_line(r):
  """One printed line per run."""
  return (f"round {r['round']} {r['variant']:<12} train {fmt(r['train_eps'], '6.1f')} ex/s "
          f"(padding {fmt(r['train_padding_efficiency'], '.3f')})  eval "
          f"{fmt(r['eval_eps'], '6.1f')} ex/s  wall {fmt(r['wall_seconds'], '5.0f')} s  test "
          f"PR-AUC {fmt(r['test_pr_auc'], '.4f')} F1@tuned {fmt(r['test_f1_tuned'], '.4f')} "
          f"best F1 {fmt(r['test_best_f1'], '.4f')}  load {r['load']}")


def median_ratio(records, name, base, key):
  """Median over rounds of name's key / base's key in the same round (None if none pair up)."""
  by_round = {r["round"]: r for r in records if r["variant"] == base}
  ratios = [r[key] / by_round[r["round"]][key] for r in records if r["variant"] == name
            and r[key] and by_round.get(r["round"], {}).get(key)]
  return statistics.median(ratios) if ratios else None


def summary_lines(records, names):
  """Per variant: medians of the speeds, x(median per-round ratio) vs names[0], mean quality."""
  lines = []
  for name in names:
    mine = [r for r in records if r["variant"] == name]
    if not mine:
      continue
    parts = []
    for key in COLUMNS:
      values = [r[key] for r in mine if r[key] is not None]
      ratio = median_ratio(records, name, names[0], key)
      parts.append(f"{key} {fmt(statistics.median(values) if values else None, '.1f')} "
                   f"(x{fmt(ratio, '.2f')})")
    for key in ("test_pr_auc", "test_f1_tuned", "test_best_f1"):
      values = [r[key] for r in mine if r[key] is not None]
      parts.append(f"{key} {fmt(statistics.mean(values) if values else None, '.4f')}")
    lines.append(f"{name:<12} " + "  ".join(parts))
  return lines


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--torch_python", required=True, help="python of the venv with torch")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--encoder_dir", required=True, help="the converted encoder (ours)")
  p.add_argument("--hf_dir", required=True, help="the same weights as a Hugging Face dir")
  p.add_argument("--positive_label", default="positive")
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--skip_steps", type=int, default=20, help="left out of the training rate")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  p.add_argument("--rounds", type=int, default=1)
  p.add_argument("--variants", default="pytorch,ours_f32,ours")
  p.add_argument("--work_dir", default="/tmp/bench_vs_pytorch")
  p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "vs_pytorch.jsonl"))
  args = p.parse_args(argv)
  unknown = set(args.variants.split(",")) - set(OURS) - set(REFERENCE)
  if unknown:
    p.error(f"unknown variants {sorted(unknown)}; known: {', '.join([*REFERENCE, *OURS])}")
  if args.steps <= args.skip_steps:
    p.error(f"--steps ({args.steps}) must exceed --skip_steps ({args.skip_steps})")
  for name in ("data_dir", "encoder_dir", "hf_dir", "work_dir"):
    setattr(args, name, os.path.abspath(getattr(args, name)))
  return args


def main(argv=None):
  args = parse_args(argv)
  names = args.variants.split(",")
  os.makedirs(args.work_dir, exist_ok=True)
  args.ids_dir = export_ids(args)
  stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
  records = []
  for r in range(1, args.rounds + 1):
    round_dir = os.path.join(args.work_dir, f"{stamp}-round{r}")
    os.makedirs(round_dir)
    for name in names:
      record = run_variant(args, name, round_dir)
      if record is None:
        continue
      record.update(variant=name, round=r, steps=args.steps, time=stamp,
                    load=bench_train_speed.load())
      records.append(record)
      print(run_line(record), flush=True)
      with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
  print("\n".join(summary_lines(records, names)))


if __name__ == "__main__":
  main()
