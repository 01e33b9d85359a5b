"""Learning per example: validation and test PR-AUC / F1 after N training examples, per variant.

  python -m benchmarks.bench_learning_curve --data_dir=runs/data/tweets_binary \\
      --encoder_dir=runs/encoders/all-minilm-l6-v2 --work_dir=/tmp/curves \\
      --examples=1600,3200,6400,9600 --seeds=1,2 \\
      --variant=today: --variant=hf:train.lr_schedule=linear,train.adam_epsilon=1e-8

Each (variant, seed, N) is one `python -m trainer.task` run of the tweets recipe
(configs/tweets_minilm.py) with N / global_batch_size steps in one epoch, so the warm-up and
decay span the N examples exactly as a user's run of that length would. A variant is
`name:override,override,...`, each override a config field=value given to trainer.task as
`--config.<field>=<value>`: the driver only speaks the command line, so it keeps working
whatever the trainer's insides look like. Export is off (not needed for the figures).
The figures come from each run's eval_results.json ("final": the best checkpoint by
validation F1, here the only one); a finished run is read back, not retrained (its record says
so: wall_seconds None). One JSON line per run is appended to --out, with the precision the run
printed, its command and provenance (benchmarks/common.py), and a table of means over seeds is
printed; `python -m benchmarks report` renders learning_curve.md.
"""
import argparse
import collections
import os
import statistics

from benchmarks import common

# (split, key) of eval_results.json's "final"; "f1" is at threshold 0.5, "best_f1" at the split's
# own F1-best threshold, "f1_tuned" (computed here) at the threshold tuned on validation.
METRICS = (("test", "pr_auc"), ("test", "best_f1"), ("test", "f1_tuned"), ("test", "f1"),
           ("validation", "pr_auc"), ("validation", "best_f1"))


def parse_variant(spec):
  """'name:a.b=1,c=x' -> ('name', ['--config.a.b=1', '--config.c=x'])."""
  name, _, overrides = spec.partition(":")
  if not name:
    raise ValueError(f"variant {spec!r} needs a name before ':'")
  flags = [f"--config.{o.strip()}" for o in overrides.split(",") if o.strip()]
  for flag in flags:
    if "=" not in flag:
      raise ValueError(f"override {flag[len('--config.'):]!r} of variant {name} needs field=value")
  return name, flags


def run_command(args, flags, seed, examples, model_dir):
  """The trainer.task command line of one run."""
  steps = examples // args.batch_size
  overrides = [f"train.global_batch_size={args.batch_size}", f"train.steps_per_epoch={steps}",
               "train.epochs=1", f"train.checkpoint_every_steps={steps}", f"train.seed={seed}",
               "export=False"]
  return common.trainer_command(model_dir, args.data_dir, args.encoder_dir, overrides,
                                config=args.config) + flags


def read_final(model_dir):
  """{split/metric: value} (METRICS, test/f1_tuned, threshold) of a finished run, or None."""
  final = common.read_final(model_dir)
  if final is None:
    return None
  record = {f"{split}/{k}": final.get(f"{split}_{k}") for split, k in METRICS}
  record["threshold"] = final["threshold"]
  return record


def run_one(args, name, flags, seed, examples, machine):
  model_dir = os.path.join(args.work_dir, f"{name}-seed{seed}-n{examples}")
  cmd = run_command(args, flags, seed, examples, model_dir)
  result = read_final(model_dir)
  before = common.sample()
  run = {"seconds": None, "output": ""}
  if result is None:
    print(f"run: {name} seed {seed} examples {examples}: {' '.join(cmd[1:])}", flush=True)
    run = common.run_logged(cmd, model_dir + ".log")
    if run["returncode"]:
      return None
    result = read_final(model_dir)
  record = dict(variant=name, overrides=flags, seed=seed, examples=examples,
                wall_seconds=run["seconds"], precision=common.precision_used(run["output"]),
                command=cmd, provenance=common.provenance(machine, before, common.sample()),
                **result)
  print("  " + ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)),
        flush=True)
  return record


def print_table(records):
  groups = collections.defaultdict(list)
  for r in records:
    groups[(r["variant"], r["examples"])].append(r)
  print(f"{'variant':<16} {'examples':>8} {'seeds':>5} " +
        " ".join(f"{k[0][:4]}/{k[1]:<8}" for k in METRICS))
  for (name, n), rs in sorted(groups.items()):
    means = [statistics.mean(r[f"{s}/{k}"] for r in rs) for s, k in METRICS]
    print(f"{name:<16} {n:>8} {len(rs):>5} " + " ".join(f"{m:13.4f}" for m in means))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", required=True)
  p.add_argument("--encoder_dir", required=True)
  p.add_argument("--work_dir", required=True, help="one model_dir per run (kept, resumable)")
  p.add_argument("--config", default="configs/tweets_minilm.py")
  p.add_argument("--examples", default="1600,3200,6400,9600")
  p.add_argument("--seeds", default="1,2")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--variant", action="append", default=[],
                 help="name:field=value,... (repeatable; default: today's config)")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "learning_curve_runs.jsonl"))
  args = p.parse_args(argv)
  try:
    variants = [parse_variant(v) for v in (args.variant or ["today:"])]
  except ValueError as e:
    raise SystemExit(f"error: {e}")
  os.makedirs(args.work_dir, exist_ok=True)
  machine = common.machine()
  records = []
  for examples in [int(x) for x in args.examples.split(",")]:
    for seed in [int(x) for x in args.seeds.split(",")]:
      for name, flags in variants:  # interleaved, so a change of machine load hits all alike
        record = run_one(args, name, flags, seed, examples, machine)
        if record:
          records.append(record)
          if args.out:
            common.append_record(args.out, record)
  if records:
    print_table(records)


if __name__ == "__main__":
  main()
