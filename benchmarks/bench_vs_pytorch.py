"""This package vs the PyTorch reference (Hugging Face Trainer) on the same machine, like for like.

  python -m benchmarks.bench_vs_pytorch --torch_python=/tmp/torchenv/bin/python \\
      --data_dir=runs/data/tweets_binary --encoder_dir=runs/encoders/all-minilm-l6-v2 \\
      --hf_dir="$(python -m trainer.convert --print_bundled_minilm)" \\
      --steps=200 --seeds=1,2,3,4,5 --variants=pytorch,ours_f32,ours
  (on a CPU with native bf16, the like-for-like bf16 pair: --variants=pytorch_bf16,ours_bf16)

Both sides train --steps steps of batch 32 on the same token ids and labels (export_split_ids.py's
.npz files, written once into --work_dir) with the same seed, evaluate validation and test at the
same --eval_batch and run with the same --threads. For each seed of --seeds every variant
(REFERENCE, OURS below) runs once as a fresh subprocess, interleaved (A B C A B C ...). --isa caps
both sides' kernels at an instruction set: an emulation of an older CPU, float32 variants only.
One JSON line per run is appended to --out; `python -m benchmarks report` renders
results/vs_pytorch.md, and docs/benchmarks.md says how to read it.
"""
import argparse
import hashlib
import json
import os
import sys
import time

from benchmarks import common

# The reference: benchmarks/pytorch_reference.py under --torch_python, float32 or bf16 autocast.
REFERENCE = {"pytorch": [], "pytorch_bf16": ["--bf16"]}
# Ours: trainer.task on configs/tweets_minilm.py with these overrides. `ours` keeps
# precision=auto (mixed bfloat16 on CPUs with native bf16, float32 elsewhere); `ours_bf16` is
# the pair of pytorch_bf16.
OURS = {"ours_f32": ["precision=float32"], "ours": [], "ours_bf16": ["precision=mixed_bfloat16"]}
# Caps on the instruction sets each library's kernels dispatch to (see the docstring).
ISA_ENV = {
    "native": {},
    "avx512_core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                    "ATEN_CPU_CAPABILITY": "avx512"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
}
NATIVE_ONLY = ("ours", "ours_bf16", "pytorch_bf16")   # bf16 needs the real CPU's kernels


def thread_env(threads, isa="native"):
  """The environment both sides run in: the same number of compute threads, the same ISA cap."""
  return dict({"OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads)},
              **ISA_ENV[isa])


def ours_command(args, model_dir, name, seed):
  """The trainer.task command line of one run: --steps steps, then the final evaluation."""
  return common.trainer_command(model_dir, args.data_dir, args.encoder_dir, [
      f"train.steps_per_epoch={args.steps}", "train.epochs=1", f"train.seed={seed}",
      f"train.log_every_steps={args.skip_steps}", "train.checkpoint_every_steps=0",
      f"eval.global_batch_size={args.eval_batch}", "export=False"] + OURS[name])


def reference_command(args, out_json, name, seed):
  """The pytorch_reference.py command line of one run."""
  return [args.torch_python, os.path.join(common.REPO, "benchmarks", "pytorch_reference.py"),
          f"--ids_dir={args.ids_dir}", f"--hf_dir={args.hf_dir}", f"--out={out_json}",
          f"--work_dir={os.path.dirname(out_json)}", f"--steps={args.steps}",
          f"--skip_steps={args.skip_steps}", f"--threads={args.threads}",
          f"--eval_batch={args.eval_batch}", f"--seed={seed}"] + REFERENCE[name]


def read_reference(path):
  """The figures of pytorch_reference.py's JSON output, under the names read_ours gives."""
  with open(path) as f:
    ref = json.load(f)
  rates, test = ref["eval_examples_per_sec"], ref["test"]
  counts = {s: ref[s]["num_examples"] for s in ("validation", "test")}
  return dict({k: ref.get(k) for k in ("threshold", "precision", "eval_batch", "threads", "seed",
                                       "batch_size")},
              train_eps=ref["train_examples_per_sec"], eval_eps_by_split=rates,
              train_padding_efficiency=ref["train_padding_efficiency"],
              eval_eps=common.combined_rate(rates, counts),
              **{f"test_{k}": test[k] for k in ("pr_auc", "f1_tuned", "best_f1")},
              versions={k: ref.get(k) for k in ("torch", "transformers")})


def read_ours(model_dir, output):
  """The figures of one trainer.task run: its eval_results.json, its config.json (evaluation
  batch, seed) and the precision it printed."""
  final = common.read_final(model_dir) or {}
  config = common.read_config(model_dir) or {}
  train, evaluation = config.get("train", {}), config.get("eval", {})
  keys = ("train_eps", "train_padding_efficiency", "eval_eps", "eval_eps_by_split",
          "test_pr_auc", "test_f1_tuned", "test_best_f1", "threshold")
  return dict({k: final.get(k) for k in keys}, precision=common.precision_used(output),
              eval_batch=evaluation.get("global_batch_size"),
              batch_size=train.get("global_batch_size"), seed=train.get("seed"))


def run_variant(args, name, seed, run_dir):
  """Runs one variant once. Returns (figures, command, env, run) or None if it failed."""
  env = thread_env(args.threads, args.isa)
  out_json = os.path.join(run_dir, "reference.json")
  if name in REFERENCE:
    os.makedirs(run_dir, exist_ok=True)
    command = reference_command(args, out_json, name, seed)
  else:
    command = ours_command(args, run_dir, name, seed)
  run = common.run_logged(command, run_dir + ".log", env)
  if run["returncode"]:
    return None
  figures = (read_reference(out_json) if name in REFERENCE
             else dict(read_ours(run_dir, run["output"]), threads=args.threads))
  return figures, command, env, run


def ids_dir_of(work_dir, data_dir):
  """Where the ids of data_dir go: one directory per data directory, so that a run on other
  data in the same --work_dir never reuses stale ids."""
  digest = hashlib.sha1(os.path.abspath(data_dir).encode()).hexdigest()[:8]
  return os.path.join(work_dir, "ids", f"{os.path.basename(data_dir.rstrip('/'))}-{digest}")


def export_ids(args):
  """Writes the token ids / labels .npz files once (export_split_ids.py); returns their dir."""
  ids_dir = ids_dir_of(args.work_dir, args.data_dir)
  if not all(os.path.exists(os.path.join(ids_dir, f"{s}.npz"))
             for s in ("train", "validation", "test")):
    command = [sys.executable, "-m", "benchmarks.export_split_ids", f"--data_dir={args.data_dir}",
               f"--output_dir={ids_dir}", f"--positive_label={args.positive_label}"]
    if common.run_logged(command, os.path.join(args.work_dir, "export_ids.log"))["returncode"]:
      raise SystemExit("error: exporting the token ids failed")
  return ids_dir


def run_line(r):
  """One printed line per run."""
  figures = ("train_eps", "eval_eps", "wall_seconds", "test_pr_auc", "test_f1_tuned")
  return (f"seed {r['seed']} {r['variant']} ({r['precision']}): " + ", ".join(
      f"{k} {'-' if r[k] is None else format(r[k], '.4g')}" for k in figures)
      + ("  LOADED" if r["provenance"]["loaded"] else ""))


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--torch_python", required=True, help="python of the venv with torch")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--encoder_dir", required=True, help="the converted encoder (ours)")
  p.add_argument("--hf_dir", required=True, help="the same weights as a Hugging Face dir")
  p.add_argument("--positive_label", default="positive")
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--skip_steps", type=int, default=20, help="left out of the training rate")
  p.add_argument("--eval_batch", type=int, default=64, help="evaluation batch, both sides")
  p.add_argument("--threads", type=int, default=2, help="compute threads, both sides")
  p.add_argument("--seeds", default="42", help="comma-separated; each runs every variant")
  p.add_argument("--isa", default="native", choices=sorted(ISA_ENV),
                 help="cap both sides' kernels at this instruction set (an emulation)")
  p.add_argument("--variants", default="pytorch,ours_f32,ours")
  p.add_argument("--work_dir", default="/tmp/bench_vs_pytorch")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "vs_pytorch.jsonl"))
  return p


def parse_args(argv=None):
  """The parsed flags, checked together; a bad combination is the parser's one-line error."""
  p = make_parser()
  args = p.parse_args(argv)
  args.names = common.variant_names(p, args.variants, [*REFERENCE, *OURS])
  if args.isa != "native" and set(args.names) & set(NATIVE_ONLY):
    p.error(f"--isa={args.isa}: {', '.join(sorted(set(args.names) & set(NATIVE_ONLY)))} "
            f"run in bf16 or as the real CPU picks; run only float32 variants under an ISA cap")
  if args.steps <= args.skip_steps:
    p.error(f"--steps ({args.steps}) must exceed --skip_steps ({args.skip_steps})")
  try:
    args.seed_list = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
  for name in ("data_dir", "encoder_dir", "hf_dir", "work_dir"):
    setattr(args, name, os.path.abspath(getattr(args, name)))
  return args


def main(argv=None):
  args = parse_args(argv)
  os.makedirs(args.work_dir, exist_ok=True)
  args.ids_dir = export_ids(args)
  args.max_seq_length = (common.read_manifest(args.data_dir) or {}).get("max_seq_length")
  machine = common.machine()
  stamp = time.strftime("%Y%m%dT%H%M%S")
  for seed, name in common.interleave(args.seed_list, args.names):
    run_dir = os.path.join(args.work_dir, stamp, f"seed{seed}-{name}")
    before = common.sample()
    done = run_variant(args, name, seed, run_dir)
    after = common.sample()
    if done is None:
      continue
    figures, command, env, run = done   # one run's JSON line: figures, settings, provenance
    r = dict(figures, variant=name, side="pytorch" if name in REFERENCE else "ours", seed=seed,
             steps=args.steps, skip_steps=args.skip_steps, isa=args.isa, data_dir=args.data_dir,
             ids_dir=args.ids_dir, max_seq_length=args.max_seq_length,
             wall_seconds=run["seconds"], command=command, env=env, log=run["log"],
             provenance=common.provenance(machine, before, after))
    print(run_line(r), flush=True)
    common.append_record(args.out, r)
  print(f"records appended to {args.out}; python -m benchmarks report renders vs_pytorch.md")


if __name__ == "__main__":
  main()
