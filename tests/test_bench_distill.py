"""benchmarks/bench_distill.py's pure parts: the F1 it records and the two runs of a seed."""
from benchmarks import bench_distill

SWEEP = {"thresholds": [0.3, 0.4, 0.5], "f1": [0.70, 0.75, 0.72]}


def test_the_f1_is_at_the_tuned_threshold_for_binary_and_macro_for_multiclass():
  final = {"threshold": 0.4, "test": {"threshold_sweep": SWEEP, "f1": 0.72, "macro_f1": 0.6}}
  assert bench_distill.test_f1(final, "binary") == 0.75      # not the 0.72 at 0.5
  assert bench_distill.test_f1(final, "multiclass") == 0.6
  assert bench_distill.test_f1({"test": {}}, "binary") is None


def test_student_and_control_differ_only_in_the_teacher_and_the_encoder_they_start_from():
  args = bench_distill.make_parser().parse_args([
      "--teacher=/t", "--data_dir=/d", "--encoder_dir=/e", "--steps=7", "--work=/w",
      "--override=train.learning_rate=1e-4"])
  (s_name, s_dir, student), (c_name, c_dir, control) = bench_distill.train_commands(
      args, "2", "multiclass", "/w/cut")
  assert (s_name, s_dir, c_name, c_dir) == ("student", "/w/student_seed2", "control",
                                            "/w/control_seed2")
  assert "--config=configs/distill_tweets.py" in student
  assert "--config=configs/tweets_minilm.py" in control
  assert {"--config.distill.teacher=/t", "--config.distill.layers=1,3,5"} <= set(student)
  assert "--config.encoder.dir=/w/cut" in control and not any("distill" in a for a in control)
  same = ["--config.train.seed=2", "--config.model.head=multiclass",
          "--config.train.learning_rate=1e-4", "--config.train.steps_per_epoch=7",
          "--config.train.epochs=1", "--data_dir=/d"]
  assert all(a in student and a in control for a in same)
  assert f"--model_dir={s_dir}" in student and f"--model_dir={c_dir}" in control


def test_without_steps_both_run_the_configs_epochs():
  args = bench_distill.make_parser().parse_args(["--teacher=/t", "--data_dir=/d",
                                                 "--encoder_dir=/e"])
  for _, _, command in bench_distill.train_commands(args, "1", "binary", "/w/cut"):
    assert not any("steps_per_epoch" in a or "epochs" in a for a in command)


def test_the_page_sets_student_and_control_beside_the_teacher():
  from benchmarks import report
  prov = {"commit": "0123456789ab", "dirty": False, "cores": 2, "loaded": False,
          "time": "2026-12-07T10:00:00+0000",
          "cpu": {"model": "Xeon", "flags": ["avx2"], "native_bf16": False}}
  teacher = {"model_dir": "/runs/teacher", "test_f1": 0.80, "test_pr_auc": 0.85}
  same = dict(teacher=teacher, provenance=prov, data_dir="/d", head="binary", layers="1,3,5")
  train = lambda variant, seed, f1, eps, **kw: dict(same, **kw, kind="train", variant=variant,
      seed=seed, test_f1=f1, test_pr_auc=0.8, steps=300, starts_from=variant,
      train_seconds=100.0, train_eps=eps)
  score = lambda model, seconds: dict(same, kind="score", model=model, round=1, rows=1000,
                                      seconds=seconds, cpu_seconds=2 * seconds)
  page = report.render_page(report.DISTILL, [
      train("student", 1, 0.79, 60.0), train("control", 1, 0.75, 120.0),
      train("student", 2, 0.81, 60.0), train("control", 2, 0.77, 120.0),
      score("teacher", 100.0), score("student", 40.0),
      train("student", 1, 0.6, 50.0, data_dir="/d3", head="multiclass")])
  assert ("Teacher `/runs/teacher` (binary head, data `/d`): test F1 0.8000; the student keeps "
          "its layers 1,3,5. Student over control, train examples/s: 0.50; over teacher, scoring 1,000 rows: rows/s 2.50, rows "
          "per CPU-second 2.50.") in page
  # Another data dir is a section of its own (its rows do not join the binary means).
  assert ("Teacher `/runs/teacher` (multiclass head, data `/d3`): test F1 0.8000; the student "
          "keeps its layers 1,3,5. Student over control, train examples/s: -; scoring: not measured in this section.") in page
  cells = [[c.strip() for c in line.strip("|").split("|")] for line in page.splitlines()
           if line.startswith("|") and not set(line) <= set("|:- ")]
  student, control = cells[1], cells[2]           # cells[0]: the header
  assert student[:6] == ["student", "student", "2", "300", "0.8000 ± 0.0141", "0.0000 ± 0.0141"]
  assert control[:6] == ["control", "control", "2", "300", "0.7600 ± 0.0141", "-0.0400 ± 0.0141"]
  # rows/s = rows / wall s; rows per CPU-s = rows / CPU s
  assert cells[4][:9] == ["1", "teacher", "-", "-", "1,000", "100.0", "10.0", "200.0", "5.0"]
  assert cells[5][:9] == ["1", "student", "-", "-", "1,000", "40.0", "25.0", "80.0", "12.5"]


def test_longer_runs_other_scoring_flags_and_sizes_get_their_own_rows_and_ratios():
  from benchmarks import report
  prov = {"commit": "0123456789ab", "dirty": False, "cores": 2, "loaded": False,
          "time": "2026-12-07T10:00:00+0000",
          "cpu": {"model": "Xeon", "flags": ["avx2"], "native_bf16": False}}
  same = dict(teacher={"model_dir": "/t", "test_f1": 0.8, "test_pr_auc": 0.85}, provenance=prov,
              data_dir="/d", head="binary", layers="1,3,5")
  train = lambda steps, f1: dict(same, kind="train", variant="student", seed=1, test_f1=f1,
      test_pr_auc=0.8, steps=steps, starts_from="s", train_seconds=1.0, train_eps=1.0)
  score = lambda model, seconds, **kw: dict(dict(same, kind="score", model=model, round=1,
                                                 rows=1000, seconds=seconds, cpu_seconds=seconds),
                                            **kw)
  page = report.render_page(report.DISTILL, [
      train(300, 0.70), train(600, 0.78), score("teacher", 100.0), score("student", 50.0),
      score("teacher", 50.0, score_flags=["--bfloat16"]),
      score("student", 10.0, score_flags=["--bfloat16"]),
      score("teacher", 100.0, rows=4000), score("student", 25.0, rows=4000)])
  assert ("over teacher, scoring 1,000 rows: rows/s 2.00, rows per CPU-second 2.00; over "
          "teacher, scoring 1,000 rows --bfloat16: rows/s 5.00, rows per CPU-second 5.00; over "
          "teacher, scoring 4,000 rows: rows/s 4.00, rows per CPU-second 4.00.") in page
  rows = [line for line in page.splitlines() if line.startswith("| student")]
  assert len(rows) == 2 and "0.7000" in rows[0] and "0.7800" in rows[1]   # not one mean
  assert sum("--bfloat16" in line for line in page.splitlines()) == 2 + 1   # rows + intro


def test_unlabeled_rows_add_a_third_run_that_differs_from_the_student_only_in_them():
  args = bench_distill.make_parser().parse_args([
      "--teacher=/t", "--data_dir=/d", "--encoder_dir=/e", "--work=/w", "--unlabeled_dir=/u"])
  runs = bench_distill.train_commands(args, "3", "binary", "/w/cut")
  assert [(name, d) for name, d, _ in runs] == [
      ("student", "/w/student_seed3"), ("control", "/w/control_seed3"),
      ("student_unlabeled", "/w/student_unlabeled_seed3")]
  student, unlabeled = runs[0][2], runs[2][2]
  assert set(unlabeled) - set(student) == {"--config.distill.unlabeled_dir=/u",
                                           "--model_dir=/w/student_unlabeled_seed3"}
  assert len(unlabeled) == len(student) + 1


def test_score_records_name_what_the_export_computes_in(tmp_path):
  (tmp_path / "new" / "assets").mkdir(parents=True)
  (tmp_path / "new" / "assets" / "metadata.json").write_text('{"compute_dtype": "bfloat16"}')
  (tmp_path / "old" / "assets").mkdir(parents=True)
  (tmp_path / "old" / "assets" / "metadata.json").write_text('{"head": "binary"}')
  assert bench_distill.export_precision(str(tmp_path / "new")) == "bfloat16"
  assert bench_distill.export_precision(str(tmp_path / "old")) is None   # records none


def test_the_ratio_names_each_sides_export_precision():
  from benchmarks import report
  prov = {"commit": "0123456789ab", "dirty": False, "cores": 2, "loaded": False,
          "time": "2026-12-07T10:00:00+0000",
          "cpu": {"model": "Xeon", "flags": ["amx_bf16"], "native_bf16": True}}
  same = dict(teacher={"model_dir": "/t", "test_f1": 0.8, "test_pr_auc": 0.85}, provenance=prov,
              data_dir="/d", head="binary", layers="2,5", kind="score", round=1, rows=1000)
  score = lambda model, seconds, precision, **kw: dict(
      same, model=model, seconds=seconds, cpu_seconds=seconds, export_precision=precision, **kw)
  train = dict(same, kind="train", data_dir="/other", variant="student", seed=1, test_f1=0.8,
               test_pr_auc=0.8, steps=9, starts_from="s", train_seconds=1.0, train_eps=1.0)
  both = report.render_page(report.DISTILL, [train, score("teacher", 40.0, "bfloat16"),
                                             score("student", 16.0, "bfloat16")])
  assert "scoring 1,000 rows (bfloat16 exports): rows/s 2.50," in both
  mixed = report.render_page(report.DISTILL, [train, score("teacher", 100.0, "float32"),
                                              score("student", 25.0, "bfloat16")])
  assert ("scoring 1,000 rows (teacher's export float32, student's bfloat16: not like for like "
          "in precision): rows/s 4.00,") in mixed
  unrecorded = report.render_page(report.DISTILL, [train, score("teacher", 100.0, None),
                                                   score("student", 25.0, "bfloat16")])
  assert "(teacher's export not recorded, student's bfloat16: not like for like" in unrecorded
  rows = [line for line in mixed.splitlines() if line.startswith("|       1 |")]
  assert [r.split("|")[3].strip() for r in rows] == ["float32", "bfloat16"]


def test_the_scored_student_is_the_first_seeds_run_unless_named():
  parse = lambda *flags: bench_distill.make_parser().parse_args(
      ["--teacher=/t", "--data_dir=/d", "--encoder_dir=/e", "--work=/w", *flags])
  assert bench_distill.scored_exports(parse(), ["2", "3"]) == {
      "teacher": "/t/export", "student": "/w/student_seed2/export"}
  assert bench_distill.scored_exports(parse("--seeds="), [])["student"] == "/w/student_seed1/export"
  assert bench_distill.scored_exports(parse("--student=/s"), ["2"])["student"] == "/s/export"
