r"""Issue 40: a 3-layer student of the main job's model vs the same layers without a teacher.

  python -m benchmarks.bench_distill --teacher=runs/models/tweets_minilm --seeds=1,2,3 \
      --data_dir=runs/data/tweets_binary --encoder_dir=runs/encoders/all-minilm-l6-v2 [--steps=N]

Per seed, with the teacher's head, --override and (--steps) N steps in 1 epoch: `student`,
configs/distill_tweets.py from the teacher's fine-tuned embeddings, --layers, pooler and head, the
teacher run in every step; `control`, configs/tweets_minilm.py from the same --layers of the
pretrained --encoder_dir (the teacher's start), a new head; with --unlabeled_dir,
`student_unlabeled`, the student with those rows too (config.distill.unlabeled_dir). Then
scoring.run (bench_score's flags, plus --score_flag) on --score_rows real tweets, the teacher's and
the first seed student's exports interleaved (--seeds= scores an earlier run's, trains nothing;
--student names another run to score).
"""
import argparse
import os
import shutil
import sys

from benchmarks import common


def make_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--teacher", required=True, help="a finished trainer.task run's model_dir")
  p.add_argument("--data_dir", required=True, help="the teacher's preprocessed data")
  p.add_argument("--encoder_dir", required=True, help="the teacher's pretrained encoder")
  p.add_argument("--seeds", default="1,2,3")
  p.add_argument("--steps", type=int, default=0, help="steps per run (0: the config's epochs)")
  p.add_argument("--layers", default="1,3,5", help="the teacher's layers both models keep")
  p.add_argument("--override", action="append", default=[], help="name=value, both runs")
  p.add_argument("--unlabeled_dir", default="", help="unlabeled rows: adds student_unlabeled")
  p.add_argument("--student", default="", help="the student run (model_dir) to score; default: "
                 "--work's run of the first of --seeds (seed 1 when --seeds= is empty)")
  p.add_argument("--score_rows", type=int, default=50_000)
  p.add_argument("--score_rounds", type=int, default=2)
  p.add_argument("--score_flag", action="append", default=[], help="e.g. --bfloat16, both sides")
  p.add_argument("--work", default="/tmp/bench_distill", help="scratch: runs, encoder, CSV")
  p.add_argument("--out", default=os.path.join(common.RESULTS, "distill.jsonl"))
  return p


def test_f1(final, head):
  """The test F1 of an eval_results.json's "final": binary at its tuned threshold, else macro."""
  test = final.get("test") or {}
  return common.f1_at(test, final.get("threshold")) if head == "binary" else test.get("macro_f1")


def train_commands(args, seed, head, cut_dir):
  """[(variant, model_dir, trainer.task command)] of one seed: the student, the control, then
  with --unlabeled_dir the student with the unlabeled rows."""
  both = [f"train.seed={seed}", f"model.head={head}"] + args.override + (
      [f"train.steps_per_epoch={args.steps}", "train.epochs=1"] if args.steps else [])
  student = [f"distill.teacher={args.teacher}", f"distill.layers={args.layers}"] + both
  distil = (args.encoder_dir, "configs/distill_tweets.py")
  variants = dict(student=(*distil, student), control=(cut_dir, "configs/tweets_minilm.py", both))
  if args.unlabeled_dir:
    variants["student_unlabeled"] = (*distil, student + [
        f"distill.unlabeled_dir={args.unlabeled_dir}"])
  model_dir = lambda variant: os.path.join(args.work, f"{variant}_seed{seed}")
  return [(variant, model_dir(variant), common.trainer_command(
              model_dir(variant), args.data_dir, encoder_dir, overrides, config))
          for variant, (encoder_dir, config, overrides) in variants.items()]


def main(argv=None):
  args = make_parser().parse_args(argv)
  final = (common.read_json_in(args.teacher, "eval_results.json") or {}).get("final")
  if not final or "test" not in final:
    raise SystemExit(f"error: --teacher={args.teacher} holds no finished run with a test split")
  head, layers = common.read_config(args.teacher)["model"]["head"], args.layers.split(",")
  cut_dir = os.path.join(args.work, "encoder_layers_" + "_".join(layers))
  from trainer import distill   # TensorFlow: only when run
  try:   # the control's start
    distill.write_encoder_layers(args.encoder_dir, layers, cut_dir)
  except Exception as e:   # a bad --layers or --encoder_dir (ValueError, TensorFlow's OpError)
    raise SystemExit(f"error: the control's encoder: {e}") from None
  starts = dict(student=f"teacher's fine-tuned {args.layers}", control=f"pretrained {args.layers}")
  starts["student_unlabeled"] = starts["student"]
  machine, seeds = common.machine(), [s for s in args.seeds.split(",") if s]
  same = dict(benchmark="distill", data_dir=args.data_dir, head=head, layers=args.layers, command=[
      sys.executable, "-m", "benchmarks.bench_distill"] + list(argv or sys.argv[1:]), teacher=dict(
      model_dir=args.teacher, test_f1=test_f1(final, head), test_pr_auc=final["test"]["pr_auc"]))
  for seed in seeds:
    for variant, model_dir, command in train_commands(args, seed, head, cut_dir):
      shutil.rmtree(model_dir, ignore_errors=True)   # a finished run would only be re-read
      before, run = common.sample(), common.run_logged(command, model_dir + ".log")
      if run["returncode"]:
        raise SystemExit(f"error: {variant} seed {seed} failed: see {run['log']}")
      final = common.read_json_in(model_dir, "eval_results.json")["final"]
      common.append_record(args.out, dict(
          same, kind="train", variant=variant, seed=int(seed), starts_from=starts[variant],
          test_f1=test_f1(final, head), test_pr_auc=final["test"].get("pr_auc"),
          train_seconds=run["seconds"], train_eps=final.get("train_examples_per_sec"),
          steps=final.get("total_steps"), precision=common.precision_used(run["output"]),
          model_dir=model_dir, train_command=command, config=common.read_config(model_dir),
          provenance=common.provenance(machine, before, common.sample())))
  from benchmarks import bench_score   # TensorFlow: only here
  flags = bench_score.make_parser().parse_args([])   # its workers, threads and batch
  data = bench_score.write_csv(f"{args.work}/tweets_{args.score_rows}.csv", args.score_rows)
  exports = scored_exports(args, seeds)
  for round_, name in common.interleave(range(1, args.score_rounds + 1), list(exports)):
    command = bench_score.job_command("scoring.run", exports[name], data, os.path.join(
        args.work, f"scored_{name}"), *bench_score.score_flags(flags), *args.score_flag)
    common.append_record(args.out, dict(
        bench_score.timed(command, machine), **same, score_command=command, kind="score",
        score_flags=args.score_flag, export_precision=export_precision(exports[name]),
        model=name, round=round_, rows=args.score_rows, export=exports[name]))


def scored_exports(args, seeds):
  """{"teacher": export dir, "student": export dir}: --student's run, else --work's run of the
  first seed (seed 1 when no seeds are trained)."""
  student = args.student or os.path.join(args.work, f"student_seed{(seeds or ['1'])[0]}")
  return {"teacher": os.path.join(args.teacher, "export"),
          "student": os.path.join(student, "export")}


def export_precision(export_dir):
  """What the export computes in (its metadata's compute_dtype; None if it records none)."""
  return (common.read_json_in(os.path.join(export_dir, "assets"), "metadata.json") or {}).get(
      "compute_dtype")


if __name__ == "__main__":
  main()
