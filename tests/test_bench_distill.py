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
