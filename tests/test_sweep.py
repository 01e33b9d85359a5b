"""Hyper-parameter search: the trial contract (trainer/objective.py), the search space, and the
three back-ends (launch/optuna_search.py, launch/wandb_sweep.py, vertex --tune).

The Optuna studies run real `python -m trainer.task` trials on the tiny encoder, offline.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

import trainer_fixtures as fx
from launch import search_space, sweep, vertex, wandb_sweep
from trainer import config as config_lib
from trainer import eval_loop, objective

GOOD_LR, BAD_LR = 5e-3, 1e-6
# Fast trials: one padded shape, checkpoints at epoch ends only, no export.
TRIAL_FLAGS = ["--config.export=False", "--config.train.padding=fixed",
               "--config.train.checkpoint_every_steps=0"]
ERROR_LINE = re.compile(r"^error: [^\n]+\n$")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """Binary rows whose label is one token: lr 5e-3 learns it in 2 epochs, 1e-6 does not."""
  d = str(tmp_path_factory.mktemp("data"))
  fx.tiny_data_dir(d, n_train=192, n_val=64, n_test=32)
  return d


def write_space(tmp_path, text, name="space.yaml"):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


LR_SPACE = f"""\
trials: 3
parameters:
  learning_rate: {{choice: [{BAD_LR}, {GOOD_LR}]}}
"""


def sweep_command(space, output_dir, data_dir, *flags):
  return [sys.executable, "-m", "launch.sweep", "optuna", f"--space={space}",
          f"--output_dir={output_dir}", *flags, "--", f"--config={fx.TINY_CONFIG}",
          f"--data_dir={data_dir}", *TRIAL_FLAGS]


def load_study(output_dir, name="space"):
  return optuna.load_study(study_name=name, storage=f"sqlite:///{output_dir}/study.db")


# --- the search space ------------------------------------------------------------------------

@pytest.mark.parametrize("parameters, message", [
    ({"lr": {"uniform": [0.1, 0.2]}}, "unknown parameter 'lr'; known: learning_rate"),
    ({"dropout": {"uniform": [0.3, 0.1]}}, "empty or inverted range [0.3, 0.1]"),
    ({"dropout": {"uniform": [0.1, 0.1]}}, "empty or inverted range [0.1, 0.1]"),
    ({"learning_rate": {"log_uniform": [0, 1e-3]}}, "log_uniform needs low > 0"),
    ({"epochs": {"uniform": [1, 3]}}, "epochs: is an integer setting"),
    ({"dropout": {"choice": []}}, "choice needs a non-empty list"),
    ({"dropout": {"choice": [0.1, "high"]}}, "parameter dropout: 'high' is not a number"),
    ({"dropout": {"normal": [0, 1]}}, "write one of {log_uniform: ...}"),
])
def test_bad_parameters_are_one_line_errors(parameters, message):
  with pytest.raises(ValueError) as e:
    search_space.parse({"parameters": parameters})
  assert message in str(e.value) and "\n" not in str(e.value)


def test_space_maps_names_to_trainer_flags():
  space = search_space.parse({"trials": 4, "parameters": {
      "learning_rate": {"log_uniform": ["1e-5", 1e-4]}, "epochs": {"int": [2, 4]},
      "seed": {"choice": [1, "2"]}}})  # YAML reads 1e-5 (no dot) as a string: a number here
  assert space.parameters[0].low == 1e-5 and space.parameters[2].values == (1, 2)
  assert space.trials == 4 and [p.kind for p in space.parameters] == ["log_uniform", "int",
                                                                        "choice"]
  assert space.flags({"learning_rate": 3e-5, "epochs": 3, "seed": 2}) == [
      "--config.train.learning_rate=3e-05", "--config.train.epochs=3", "--config.train.seed=2"]
  # Every flag is a field of the trainer's config (or --data_dir).
  config = config_lib.default_config()
  for flag in search_space.PARAMETERS.values():
    if flag != "data_dir":
      section, field = flag.split(".")[1:]
      assert field in config[section], flag


# --- the trial contract ----------------------------------------------------------------------

def test_objective_defaults_to_the_best_checkpoint_metric():
  config = config_lib.default_config()
  assert objective.resolve_name("", config) == eval_loop.best_key(config) == "best_f1"
  with config.unlocked():
    config.eval.best_metric = "pr_auc"
  assert objective.default_name(config) == eval_loop.best_key(config) == "pr_auc"
  assert objective.goal("loss") == "minimize" and objective.goal("pr_auc") == "maximize"
  with pytest.raises(ValueError, match="'macro_f1' is not a validation metric of a binary run"):
    objective.resolve_name("macro_f1", config)
  assert "macro_f1" in objective.produced_metrics("multiclass")


def test_trial_model_dir_comes_from_the_tuning_service():
  assert objective.trial_model_dir("gs://b/m", {"CLOUD_ML_TRIAL_ID": "7"}) == "gs://b/m/trial-7"
  assert objective.trial_model_dir("gs://b/m", {"WANDB_RUN_ID": "ab12"}) == "gs://b/m/trial-ab12"
  assert objective.trial_model_dir("gs://b/m", {}) == "gs://b/m"


# The default tier covers it in parts: the same refusal through launch.sweep in this process
# (test_bad_search_input_is_one_line_before_any_trial, "metric: macro_f1"), --objective passed
# to trainer.task by every trial, and trainer.task's one-line exit 1 (test_trainer).
@pytest.mark.slow
def test_trainer_refuses_an_objective_it_does_not_produce(data_dir, tmp_path):
  proc = subprocess.run(fx.task_command(data_dir, str(tmp_path / "run"), "--objective=macro_f1"),
                        env=fx.task_env(), cwd=fx.REPO, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "error: objective 'macro_f1' is not a validation metric of a binary run")
  assert not (tmp_path / "run").exists()  # refused before training started


# --- optuna ----------------------------------------------------------------------------------

def run_study(tmp_path, data_dir, space_text):
  """A study of `python -m launch.sweep optuna` (one trial at a time, sampler seed 0), with
  cloudml-hypertune's file set; -> (the finished process, its output dir, hypertune file)."""
  space = write_space(tmp_path, space_text)
  out = tmp_path / "search"
  hypertune_file = tmp_path / "hypertune" / "output.metrics"
  proc = subprocess.run(sweep_command(space, out, data_dir, "--sampler_seed=0"),
                        env=fx.task_env(CLOUD_ML_HP_METRIC_FILE=str(hypertune_file)),
                        cwd=fx.REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc, out, hypertune_file


def assert_trials_reported(proc, out, hypertune_file, trials):
  """Each trial reports through stdout and hypertune: what Optuna holds is the run's own."""
  for t in trials:
    # The value Optuna got from the trial's `best_f1=` line is the run's own final result.
    results = json.loads((out / f"trial-{t.number}" / "eval_results.json").read_text())
    assert t.value == pytest.approx(results["final"]["validation"]["best_f1"], rel=1e-5)
    # One intermediate report per evaluation (2 epochs).
    assert sorted(t.intermediate_values) == [e["step"] for e in results["epochs"]]
    assert isinstance(t.user_attrs["test_f1_tuned"], float)
  # cloudml-hypertune's file (the trial that finished last rewrote it last): one line per
  # evaluation, then the objective.
  lines = [json.loads(line) for line in hypertune_file.read_text().splitlines()]
  last = max(trials, key=lambda t: t.datetime_complete)
  assert len(lines) == 3
  assert float(lines[-1]["best_f1"]) == pytest.approx(last.value, rel=1e-5)
  assert [int(r["global_step"]) for r in lines[:2]] == sorted(last.intermediate_values)
  # One line per finished trial, then the table.
  out_lines = proc.stdout.splitlines()
  assert sum(line.startswith("trial ") and " complete: best_f1=" in line
             for line in out_lines) == len(trials)
  header = next(line for line in out_lines if line.startswith("trial  state"))
  assert header.split() == ["trial", "state", "learning_rate", "best_f1", "test", "f1_tuned",
                            "wall"]
  study = load_study(out)
  assert f"best: trial {study.best_trial.number} best_f1=" in proc.stdout


def test_optuna_trial_reports_its_value_evaluations_and_hypertune_lines(data_dir, tmp_path):
  """One trial: the reporting contract of a completed trial (the 3-trial study below, in the
  slow tier, also checks that the search prefers the better learning rate)."""
  proc, out, hypertune_file = run_study(
      tmp_path, data_dir, f"trials: 1\nparameters:\n  learning_rate: {{choice: [{GOOD_LR}]}}\n")
  trials = load_study(out).get_trials()
  assert [(t.state.name, t.params["learning_rate"]) for t in trials] == [("COMPLETE", GOOD_LR)]
  assert_trials_reported(proc, out, hypertune_file, trials)


@pytest.mark.slow
def test_optuna_study_finds_the_better_learning_rate(data_dir, tmp_path):
  """3 trials over two learning rates; each trial reports through stdout and hypertune.

  One at a time: with --parallel, Optuna reseeds the sampler, and the draws are not repeatable.
  """
  proc, out, hypertune_file = run_study(tmp_path, data_dir, LR_SPACE)
  study = load_study(out)
  trials = study.get_trials()
  assert [t.state.name for t in trials] == ["COMPLETE"] * 3
  assert {t.params["learning_rate"] for t in trials} == {GOOD_LR, BAD_LR}
  assert study.best_trial.params["learning_rate"] == GOOD_LR
  good = min(t.value for t in trials if t.params["learning_rate"] == GOOD_LR)
  bad = max(t.value for t in trials if t.params["learning_rate"] == BAD_LR)
  assert good > bad + 0.05, (good, bad)
  assert_trials_reported(proc, out, hypertune_file, trials)


@pytest.mark.slow
def test_killed_study_continues_without_repeating_finished_trials(data_dir, tmp_path):
  space = write_space(tmp_path, LR_SPACE)
  out = tmp_path / "search"
  command = sweep_command(space, out, data_dir, "--sampler_seed=1", "--heartbeat_seconds=1")
  driver = subprocess.Popen(command, env=fx.task_env(), cwd=fx.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  for line in driver.stdout:
    if line.startswith("trial 0 complete"):
      break
  time.sleep(15)  # trial 1 is running
  driver.send_signal(signal.SIGKILL)
  driver.wait()
  first = load_study(out).get_trials()
  assert [t.state.name for t in first] == ["COMPLETE", "RUNNING"]
  trial0_results = (out / "trial-0" / "eval_results.json").stat().st_mtime

  rerun = subprocess.run(command, env=fx.task_env(), cwd=fx.REPO, capture_output=True,
                         text=True, timeout=900)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert "1 of 3 trials done" in rerun.stdout
  trials = load_study(out).get_trials()
  states = [t.state.name for t in trials]
  # Trial 1 was left RUNNING: failed, then retried once (trial 2, same params, same model_dir).
  assert states[:2] == ["COMPLETE", "FAIL"] and states.count("COMPLETE") == 3
  assert trials[2].params == trials[1].params
  assert trials[2].user_attrs["model_dir"] == str(out / "trial-1")
  assert (out / "trial-0" / "eval_results.json").stat().st_mtime == trial0_results
  assert not any(line.startswith("trial 0 ") for line in rerun.stdout.splitlines())


@pytest.mark.slow
def test_weak_trial_is_pruned_and_seeds_rerun_the_best(data_dir, tmp_path):
  space = write_space(tmp_path, LR_SPACE.replace("trials: 3", "trials: 2"))
  out = tmp_path / "search"
  proc = subprocess.run(sweep_command(space, out, data_dir, "--sampler_seed=0",
                                      "--pruner_startup_trials=1", "--seeds=2"),
                        env=fx.task_env(), cwd=fx.REPO, capture_output=True, text=True,
                        timeout=1800)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  trials = load_study(out).get_trials()
  # Trial 1 (lr 1e-6) is below trial 0's value at the first evaluation: stopped there.
  assert [(t.state.name, t.params["learning_rate"]) for t in trials] == [
      ("COMPLETE", GOOD_LR), ("PRUNED", BAD_LR)]
  assert list(trials[1].intermediate_values) == [12]
  assert "trial 1 pruned at step 12" in proc.stdout
  assert "final" not in json.loads((out / "trial-1" / "eval_results.json").read_text())
  seeds = load_study(out, "space-seeds-of-trial-0").get_trials()
  assert sorted(t.params["seed"] for t in seeds) == [1, 2]
  values = [t.user_attrs["test_f1_tuned"] for t in seeds]
  mean, sd = sum(values) / 2, abs(values[0] - values[1]) / 2 ** 0.5
  assert f"seeds: test f1_tuned {mean:.4f} ± {sd:.4f} (mean ± SD over 2 seeds" in proc.stdout


def test_crashed_trials_are_failed_with_their_error_line_and_the_study_goes_on(tmp_path):
  broken = tmp_path / "broken"  # a data dir whose manifest the trainer refuses
  broken.mkdir()
  (broken / "manifest.json").write_text("{}")
  space = write_space(tmp_path, f"trials: 3\nparameters:\n  data_dir: {{choice: [{broken}]}}\n")
  out = tmp_path / "search"
  command = [sys.executable, "-m", "launch.sweep", "optuna", f"--space={space}",
             f"--output_dir={out}", "--parallel=2", "--", f"--config={fx.TINY_CONFIG}",
             *TRIAL_FLAGS]
  proc = subprocess.run(command, env=fx.task_env(), cwd=fx.REPO, capture_output=True, text=True,
                        timeout=600)
  trials = load_study(out).get_trials()
  assert [t.state.name for t in trials] == ["FAIL"] * 3  # the study went on after failures
  first, second = sorted(trials, key=lambda t: t.datetime_start)[:2]
  assert second.datetime_start < first.datetime_complete  # --parallel=2: two at a time
  for t in trials:
    assert t.user_attrs["error"].startswith("error: ") and "\n" not in t.user_attrs["error"]
    assert f"trial {t.number} failed: {t.user_attrs['error']}" in proc.stdout
  assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
      "error: no trial completed")


@pytest.mark.parametrize("space_text, flags, message", [
    ("parameters:\n  lr: {uniform: [0.1, 0.2]}\n", [], "unknown parameter 'lr'"),
    ("parameters:\n  dropout: {uniform: [0.2, 0.1]}\n", [], "empty or inverted range"),
    ("parameters:\n  dropout: {uniform: [0.1, 1.5]}\n", [],
     "parameter dropout=1.5: config.model.dropout must be in [0, 1)"),
    ("metric: macro_f1\nparameters:\n  dropout: {uniform: [0.0, 0.2]}\n", [],
     "objective 'macro_f1' is not a validation metric of a binary run"),
    ("parameters:\n  dropout: {uniform: [0.0, 0.2]}\n", ["--storage=sqlite:////no/such/dir/x.db"],
     "cannot open the study storage sqlite:////no/such/dir/x.db"),
    ("parameters:\n  dropout: {uniform: [0.0, 0.2]}\n", ["--output_dir=gs://b/search"],
     "the default SQLite study cannot live in gs://b/search: pass --storage"),
    ("parameters:\n  dropout: {uniform: [0.0, 0.2]}\n",
     ["--storage=postgresql://user:s3cret@localhost:1/db"],
     "cannot open the study storage postgresql://user:***@localhost:1/db"),
])
def test_bad_search_input_is_one_line_before_any_trial(data_dir, tmp_path, capsys, space_text,
                                                        flags, message):
  space = write_space(tmp_path, space_text)
  out = tmp_path / "search"
  code = sweep.main(["optuna", f"--space={space}", f"--output_dir={out}", *flags, "--",
                     f"--config={fx.TINY_CONFIG}", f"--data_dir={data_dir}"])
  err = capsys.readouterr().err
  assert code == 2 and ERROR_LINE.match(err) and message in err, err
  assert "s3cret" not in err
  assert not (out / "logs").exists()  # no trial started


# --- W&B Sweeps ------------------------------------------------------------------------------

# The sweep configuration's top-level keys and parameter distributions (W&B's sweep reference).
WANDB_SWEEP_KEYS = {"program", "method", "metric", "parameters", "name", "description",
                    "project", "entity", "run_cap", "early_terminate", "command"}
WANDB_DISTRIBUTIONS = {"constant", "categorical", "int_uniform", "uniform", "q_uniform",
                       "log_uniform", "log_uniform_values", "q_log_uniform",
                       "q_log_uniform_values", "inv_log_uniform", "inv_log_uniform_values",
                       "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta"}


def test_wandb_sweep_yaml_runs_the_trial_contract(tmp_path, capsys, monkeypatch):
  space = write_space(tmp_path, """\
trials: 6
parallel: 2
parameters:
  learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}
  epochs: {int: [1, 3]}
  dropout: {choice: [0.0, 0.1]}
""")
  monkeypatch.chdir(fx.REPO)
  code = sweep.main(["wandb", f"--space={space}", "--model_dir=gs://b/sweep", "--dry_run",
                     "--", "--config=configs/tiny.py", "--data_dir=gs://b/data"])
  printed = capsys.readouterr().out
  assert code == 0
  text, _, commands = printed.partition("wandb sweep")
  config = yaml.safe_load(text)
  assert set(config) <= WANDB_SWEEP_KEYS
  assert config["method"] == "bayes" and config["run_cap"] == 6
  assert config["metric"] == {"name": "objective/best_f1", "goal": "maximize"}
  for spec in config["parameters"].values():
    assert spec.get("distribution", "categorical") in WANDB_DISTRIBUTIONS
  assert config["parameters"]["config.train.learning_rate"] == {
      "distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3}
  assert config["command"][-1] == "${args_no_boolean_flags}"
  assert "wandb agent --count 3 " in commands and "--project bert-text-classification" in commands
  # Expand the command as W&B's agent does, for one set of values, and parse it as trainer.task.
  from wandb.sdk.launch.sweeps import utils as sweep_utils
  values = {"config.train.learning_rate": {"value": 3e-4}, "config.train.epochs": {"value": 2},
            "config.model.dropout": {"value": 0.1}}
  macros = sweep_utils.create_sweep_command_args({"args": values})
  macros.update(env=["/usr/bin/env"], interpreter=["python"])
  argv = []
  for chunk in sweep_utils.create_sweep_command(list(config["command"])):
    argv += macros[chunk[2:-1]] if chunk.startswith("${") else [chunk]
  assert argv[:4] == ["/usr/bin/env", "python", "-m", "trainer.task"]
  # Parsed by trainer.task's own flags in a fresh process (absl flags are process-wide: other
  # test modules define flags of the same names).
  code = ("import json, sys; from bertcore import cli; from trainer import task; "
          "cli.parse_flags(sys.argv); f = task.FLAGS; print(json.dumps([f.config.train.learning_rate, "
          "f.config.train.epochs, f.config.model.dropout, f.model_dir_per_trial, f.objective, "
          "f.config.wandb.mode]))")
  out = subprocess.run([sys.executable, "-c", code, *argv[4:]], cwd=fx.REPO, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, WANDB_MODE="disabled"))
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads(out.stdout.splitlines()[-1]) == [3e-4, 2, 0.1, True, "best_f1", "online"]


# --- Vertex AI (Vizier) ----------------------------------------------------------------------

IMAGE = "us-central1-docker.pkg.dev/proj/repo/bert-trainer:1"
VERTEX_TUNE = ["vertex", "--project=proj", "--region=us-central1", "--staging_bucket=gs://bkt/s",
               f"--image={IMAGE}", "--job_name=bert-tune", "--machine_type=g2-standard-8"]
TUNE_SPACE = """\
metric: pr_auc
trials: 8
parallel: 2
parameters:
  learning_rate: {log_uniform: [1.0e-5, 1.0e-4]}
  epochs: {int: [2, 4]}
  dropout: {choice: [0.0, 0.1]}
  data_dir: {choice: [gs://bkt/data128, gs://bkt/data256]}
"""
# HyperparameterTuningJob / StudySpec / ParameterSpec fields (Vertex AI v1 reference).
TUNING_JOB_FIELDS = {"display_name", "study_spec", "max_trial_count", "parallel_trial_count",
                     "max_failed_trial_count", "trial_job_spec", "labels", "encryption_spec"}
STUDY_SPEC_FIELDS = {"metrics", "parameters", "algorithm", "observation_noise",
                     "measurement_selection_type", "median_automated_stopping_spec",
                     "decay_curve_stopping_spec", "convex_automated_stopping_spec",
                     "study_stopping_config"}
PARAMETER_SPEC_FIELDS = {"parameter_id", "double_value_spec", "integer_value_spec",
                         "categorical_value_spec", "discrete_value_spec", "scale_type",
                         "conditional_parameter_specs"}


def run_submit(args, cwd):
  env = dict(os.environ, PYTHONPATH=fx.REPO)
  return subprocess.run([sys.executable, "-m", "launch.submit", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=60)


def test_vertex_tuning_job_dry_run(tmp_path):
  trial_args = ["--config=configs/tiny.py", "--model_dir=gs://bkt/tune", "--strategy=mirrored"]
  proc = run_submit(VERTEX_TUNE + ["--tune=space.yaml", "--dry_run", "--"] + trial_args,
                    _repo_copy(tmp_path))
  assert proc.returncode == 0, proc.stderr
  request = json.loads(proc.stdout)
  job = request["hyperparameter_tuning_job"]
  assert set(job) <= TUNING_JOB_FIELDS and set(job["study_spec"]) <= STUDY_SPEC_FIELDS
  assert job["max_trial_count"] == 8 and job["parallel_trial_count"] == 2
  study = job["study_spec"]
  assert study["metrics"] == [{"metric_id": "pr_auc", "goal": "MAXIMIZE"}]
  specs = {p["parameter_id"]: p for p in study["parameters"]}
  assert all(set(p) <= PARAMETER_SPEC_FIELDS for p in specs.values())
  assert specs["config.train.learning_rate"] == {
      "parameter_id": "config.train.learning_rate", "scale_type": "UNIT_LOG_SCALE",
      "double_value_spec": {"min_value": 1e-5, "max_value": 1e-4}}
  assert specs["config.train.epochs"]["integer_value_spec"] == {"min_value": 2, "max_value": 4}
  assert specs["config.model.dropout"]["discrete_value_spec"] == {"values": [0.0, 0.1]}
  assert specs["data_dir"]["categorical_value_spec"] == {"values": ["gs://bkt/data128",
                                                                    "gs://bkt/data256"]}
  # Each trial is the training job's worker pool, with the trial contract's flags.
  expected = vertex.worker_pools(IMAGE, "g2-standard-8", "NVIDIA_L4", 1, 1,
                                 trial_args + ["--model_dir_per_trial", "--objective=pr_auc"])
  assert job["trial_job_spec"]["worker_pool_specs"] == expected


def _repo_copy(tmp_path):
  """A repository root as the launcher sees it (setup.py, configs/tiny.py)."""
  root = tmp_path / "repo"
  (root / "configs").mkdir(parents=True)
  (root / "setup.py").write_text("# stand-in\n")
  (root / "configs" / "tiny.py").write_text(  # what the TensorFlow-free launcher reads
      "import ml_collections\n\n\ndef get_config():\n"
      "  return ml_collections.ConfigDict({'train': {'global_batch_size': 32}})\n")
  (root / "space.yaml").write_text(TUNE_SPACE)
  return root


@pytest.mark.parametrize("extra, message", [
    (["--data_dir=gs://bkt/d"], "--data_dir is set by the tuning job"),
    (["--objective=f1"], "--objective is set by the tuning job"),
])
def test_vertex_tuning_job_refuses_flags_it_sets(tmp_path, extra, message):
  root = _repo_copy(tmp_path)
  args = ["--config=configs/tiny.py", "--model_dir=gs://bkt/tune", "--strategy=mirrored"]
  proc = run_submit(VERTEX_TUNE + ["--tune=space.yaml", "--dry_run", "--"] + args + extra, root)
  assert proc.returncode == 2 and ERROR_LINE.match(proc.stderr) and message in proc.stderr


def test_vertex_tuning_request_is_a_valid_proto():
  aiplatform_v1 = pytest.importorskip("google.cloud.aiplatform_v1")
  space = search_space.parse(yaml.safe_load(TUNE_SPACE))
  pools = vertex.worker_pools("img/x", "g2-standard-8", "NVIDIA_L4", 1, 1, ["--strategy=mirrored"])
  request = vertex.build_tuning_request("p", "r", "j", "gs://b", space, "pr_auc", "maximize",
                                        pools)
  job = aiplatform_v1.HyperparameterTuningJob(request["hyperparameter_tuning_job"])
  assert job.max_trial_count == 8 and len(job.study_spec.parameters) == 4


def test_wandb_render_is_yaml_of_the_sweep():
  space = search_space.parse({"parameters": {"seed": {"choice": [1, 2, 3]}}})
  sweep_config = wandb_sweep.build_sweep(space, "loss", "minimize", ["--config=c.py"], "m", "p")
  assert yaml.safe_load(wandb_sweep.render(sweep_config)) == sweep_config
  assert sweep_config["parameters"] == {"config.train.seed": {"values": [1, 2, 3]}}


def test_reporter_puts_the_objective_in_the_wandb_summary(tmp_path, capsys, monkeypatch):
  import wandb
  from trainer import tracking
  monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "hypertune" / "metrics"))
  monkeypatch.setenv("WANDB_MODE", "offline")
  run = wandb.init(mode="offline", dir=str(tmp_path), project="p",
                   settings=wandb.Settings(quiet=True, console="off"))
  try:
    reporter = objective.Reporter("best_f1")
    tracker = tracking.Run(run, "offline")
    reporter.on_validation(10, {"best_f1": 0.7, "f1": 0.5}, True, tracker)
    reporter.on_validation(20, {"best_f1": 0.6, "f1": 0.6}, False, tracker)  # not the best
    assert run.summary["objective/best_f1"] == 0.7   # the value at the best checkpoint
    assert reporter.on_final({"final": {"step": 20, "validation": {"best_f1": 0.7}}}) == 0.7
  finally:
    run.finish()
  assert capsys.readouterr().out.splitlines()[-3:] == [
      "objective: step=10 best_f1=0.7", "objective: step=20 best_f1=0.6", "best_f1=0.7"]
  lines = (tmp_path / "hypertune" / "metrics").read_text().splitlines()
  assert [json.loads(line)["best_f1"] for line in lines] == ["0.7", "0.6", "0.7"]


def test_reporter_is_silent_off_the_chief(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "hypertune" / "metrics"))
  from trainer import tracking
  reporter = objective.Reporter("best_f1", chief=False)
  reporter.on_validation(10, {"best_f1": 0.7}, True, tracking.Run())
  reporter.on_final({"final": {"step": 10, "validation": {"best_f1": 0.7}}})
  assert capsys.readouterr().out == "" and not (tmp_path / "hypertune").exists()


def test_reporter_writes_no_hypertune_file_outside_a_tuning_trial(tmp_path, capsys, monkeypatch):
  # cloudml-hypertune's default file is /tmp/hypertune/output.metrics: HOME-independent, shared
  # by every user of the machine, so a normal run must not append to it.
  from trainer import tracking
  for variable in objective.HYPERTUNE_VARIABLES:
    monkeypatch.delenv(variable, raising=False)
  written = []
  import hypertune
  monkeypatch.setattr(hypertune.HyperTune, "report_hyperparameter_tuning_metric",
                      lambda self, **kw: written.append(kw))
  reporter = objective.Reporter("best_f1")
  reporter.on_validation(10, {"best_f1": 0.7}, True, tracking.Run())
  assert reporter.on_final({"final": {"step": 10, "validation": {"best_f1": 0.7}}}) == 0.7
  assert written == [] and capsys.readouterr().out.splitlines() == [
      "objective: step=10 best_f1=0.7", "best_f1=0.7"]
  monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "3")          # a Vertex tuning trial: reported
  objective.Reporter("best_f1").on_final({"final": {"step": 10, "validation": {"best_f1": 0.7}}})
  assert written == [{"hyperparameter_metric_tag": "best_f1", "metric_value": 0.7,
                      "global_step": 10}]
