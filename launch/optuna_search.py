"""The local search back-end: an Optuna study whose trials are `python -m trainer.task` processes.

  <output_dir>/study.db          the study (Optuna's RDB storage; --storage=<URL> for another
                                 database, e.g. PostgreSQL, that many machines share)
  <output_dir>/trial-<n>/        a trial's model_dir
  <output_dir>/seeds-of-trial-<n>/seed-<s>/  --seeds: the best trial <n> re-run with seed s
  <output_dir>/logs/             each trial's output

Each trial is its own process (tf.distribute must own its process). The driver reads the
trial's stdout contract (trainer/objective.py): every `objective: step=S name=V` line goes to
trial.report(), and a trial the pruner stops is killed; the last `name=V` line is the
trial's value. A re-run with the same output_dir / storage continues the study: finished
trials are kept, trials left RUNNING by a killed driver are marked failed once their
heartbeat is stale and retried once in the same model_dir (the trainer resumes from its
checkpoint). A crashed trial is recorded as failed with its last error line; the study goes on.
"""
import contextlib
import ctypes
import dataclasses
import math
import os
import posixpath
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings

import bertcore  # noqa: F401  (before TensorFlow: selects Keras 2)
import optuna
import tensorflow as tf
from ml_collections.config_flags import config_path
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from bertcore import cli, files
from launch import search_space, validation
from trainer import config as config_lib
from trainer import objective

INTERMEDIATE = re.compile(r"^objective: step=(\d+) (\w+)=(\S+)$")
FINAL = re.compile(r"^(\w+)=(\S+)$")
TERMINATE_GRACE_SECONDS = 30   # a stopped trial gets this long to save its checkpoint


class TrialFailed(Exception):
  """A trial process ended without an objective; the message is its last error line."""


@dataclasses.dataclass
class Search:
  """What every trial of one search shares."""
  space: search_space.Space
  job_args: list        # trainer.task flags without --model_dir / --objective
  output_dir: str
  metric: str           # the objective
  test_metric: str      # read from each trial's eval_results.json (the --seeds summary)
  lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


# --- before any trial --------------------------------------------------------------------------

def redact(url):
  """A storage URL fit for printing: the password is hidden."""
  return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def open_storage(url, heartbeat_seconds):
  """Optuna's RDBStorage with heartbeats (stale RUNNING trials fail, then are retried once)."""
  try:
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=heartbeat_seconds, grace_period=2 * heartbeat_seconds,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
  except Exception as e:  # noqa: BLE001 (any driver's error: a bad URL is the user's input)
    raise ValueError(f"cannot open the study storage {redact(url)}: {cli.error_line(e)}") from None


def check_inputs(space, job_args):
  """Checks the trial command before any trial; returns (metric, test_metric).

  The config file is loaded as trainer.task loads it; each parameter's bounds are set on it
  and checked by trainer.config.validate; the metric must be one the run produces.
  """
  flags = validation.parse_flags(job_args)
  _check_flags(space, flags)
  config_file = flags["config"].partition(":")[0]
  config = _load_config(config_file)
  with config.unlocked():
    for name in ("model.head", "eval.best_metric"):
      if f"config.{name}" in flags:
        config_path.set_value(name, config, flags[f"config.{name}"])
  for p in space.parameters:
    if p.name == "data_dir":
      for d in p.values:
        if not tf.io.gfile.exists(posixpath.join(str(d), "manifest.json")):
          raise ValueError(f"parameter data_dir: {d} holds no manifest.json")
      continue
    for value in (p.values or (p.low, p.high)):
      trial_config = _load_config(config_file)
      try:
        config_path.set_value(p.flag.partition(".")[2], trial_config, value)
        config_lib.validate(trial_config)
      except (ValueError, TypeError) as e:
        raise ValueError(f"parameter {p.name}={value}: {cli.error_line(e)}") from None
  metric = objective.resolve_name(space.metric, config)
  # The --seeds summary: test F1 at the validation-tuned threshold where there is one.
  test_metric = "f1_tuned" if config.model.head != "multiclass" else metric
  return metric, test_metric


def _check_flags(space, flags):
  for name in ("model_dir", "objective"):
    if name in flags:
      raise ValueError(f"--{name} is set by the search: remove it from the trainer's flags")
  if "config" not in flags:
    raise ValueError("--config=configs/<experiment>.py is required after --")
  searched = {p.flag for p in space.parameters}
  for flag in sorted(searched & set(flags)):
    raise ValueError(f"--{flag} is a searched parameter: remove it from the trainer's flags")
  if "data_dir" not in flags and "data_dir" not in searched:
    raise ValueError("--data_dir=... is required after -- (or search over data_dir)")


def _load_config(path):
  try:
    return config_lib.load_config_file(path)
  except Exception as e:  # noqa: BLE001 (a broken config file is the user's input)
    raise ValueError(f"cannot load config {path}: {cli.error_line(e)}") from None


# --- one trial ---------------------------------------------------------------------------------

def suggest(trial, space):
  """{parameter name: value} drawn by Optuna's sampler."""
  params = {}
  for p in space.parameters:
    if p.kind == "choice":
      params[p.name] = trial.suggest_categorical(p.name, list(p.values))
    elif p.kind == "int":
      params[p.name] = trial.suggest_int(p.name, p.low, p.high)
    else:
      params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.kind == "log_uniform")
  return params


def _die_with_parent():
  # A trial must not outlive a killed driver: the kernel sends it SIGTERM (the trainer saves
  # a checkpoint and exits), and the re-run's retry resumes from that checkpoint.
  with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def test_value(results, metric):
  """A finished trial's test metric; f1_tuned: test F1 at the validation-tuned threshold."""
  final = results.get("final") or {}
  test = final.get("test") or {}
  if metric != "f1_tuned":
    return test.get(metric)
  sweep, threshold = test.get("threshold_sweep"), final.get("threshold")
  if not sweep or threshold not in sweep["thresholds"]:
    return None
  return sweep["f1"][sweep["thresholds"].index(threshold)]


def _read_results(model_dir):
  path = posixpath.join(model_dir, "eval_results.json")
  return files.read_json(path) if tf.io.gfile.exists(path) else {}


def run_trial(trial, search, params, model_dir, log_name):
  """Runs one trainer.task process for `params`; returns the objective.

  Its output goes to <output_dir>/logs/<log_name>.log.

  Raises optuna.TrialPruned when the pruner stops it, TrialFailed when it ends without one.
  """
  trial.set_user_attr("model_dir", model_dir)
  command = [sys.executable, "-m", "trainer.task", *search.job_args, *search.space.flags(params),
             f"--model_dir={model_dir}", f"--objective={search.metric}"]
  start = time.time()
  value, last_error, last_line, pruned = None, "", "", False
  log_dir = posixpath.join(search.output_dir, "logs")
  tf.io.gfile.makedirs(log_dir)
  with tf.io.gfile.GFile(posixpath.join(log_dir, f"{log_name}.log"), "w") as log, \
      subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       bufsize=1, preexec_fn=_die_with_parent) as proc:
    for line in proc.stdout:
      log.write(line)
      line = line.strip()
      if line.startswith("error:"):
        last_error = line
      elif line:
        last_line = line
      intermediate, final = INTERMEDIATE.match(line), FINAL.match(line)
      if intermediate and intermediate.group(2) == search.metric:
        trial.report(float(intermediate.group(3)), int(intermediate.group(1)))
        if trial.should_prune():
          pruned = True
          _stop(proc)
          break
      elif final and final.group(1) == search.metric:
        value = float(final.group(2))
    proc.wait()
  trial.set_user_attr("wall_seconds", round(time.time() - start, 1))
  if pruned:
    raise optuna.TrialPruned()
  if proc.returncode != 0 or value is None:
    error = last_error or last_line or f"exit code {proc.returncode}"
    trial.set_user_attr("error", error)
    raise TrialFailed(error)
  results = _read_results(model_dir)
  trial.set_user_attr("test_" + search.test_metric, test_value(results, search.test_metric))
  return value


def _stop(proc):
  proc.terminate()  # SIGTERM: the trainer stops at the next step with a checkpoint
  try:
    proc.wait(TERMINATE_GRACE_SECONDS)
  except subprocess.TimeoutExpired:
    proc.kill()


# --- the study ---------------------------------------------------------------------------------

def _retried_from(trial):
  """The number of the first trial a retry repeats (its model_dir is reused), else None."""
  frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
  history = RetryHeartbeatStaleTrialCallback.retry_history(frozen)
  return history[0] if history else None


def _finished(study):
  """Trials that count towards the search: complete, pruned, or crashed (with an error line).

  Trials failed only because a killed driver left them RUNNING do not count: they are retried.
  """
  return [t for t in study.get_trials(deepcopy=False)
          if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
          or (t.state == TrialState.FAIL and "error" in t.user_attrs)]


def trial_line(trial, metric, test_metric):
  """One line per finished trial."""
  params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
  wall = trial.user_attrs.get("wall_seconds")
  wall = f" ({_duration(wall)})" if wall is not None else ""
  if trial.state == TrialState.COMPLETE:
    test = trial.user_attrs.get("test_" + test_metric)
    test = f" test {test_metric}={test:.4f}" if isinstance(test, float) else ""
    return f"trial {trial.number} complete: {metric}={trial.value:.4f}{test} {params}{wall}"
  if trial.state == TrialState.PRUNED:
    return f"trial {trial.number} pruned at step {trial.last_step}: {params}{wall}"
  return f"trial {trial.number} failed: {trial.user_attrs.get('error', 'stopped')} {params}{wall}"


def _short(value):
  return f"{value:.3g}" if isinstance(value, float) else str(value)


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes}m{seconds:02d}s"


def table(study, metric, test_metric):
  """The final table: trial, state, params, objective, test metric, wall."""
  trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
  names = sorted({k for t in trials for k in t.params})
  header = ["trial", "state", *names, metric, "test " + test_metric, "wall"]
  rows = [header]
  for t in trials:
    test = t.user_attrs.get("test_" + test_metric)
    wall = t.user_attrs.get("wall_seconds")
    rows.append([str(t.number), t.state.name.lower(), *(_short(t.params.get(k, "")) for k in names),
                 f"{t.value:.4f}" if t.value is not None else "-",
                 f"{test:.4f}" if isinstance(test, float) else "-",
                 _duration(wall) if wall is not None else "-"])
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _optimize(study, search, run_one, total, parallel):
  """Runs trials until `total` count (_finished), `parallel` at a time.

  The count is the study's (other machines sharing the storage add to it); trials still
  running when it is reached are finished, not stopped.
  """
  optuna.storages.fail_stale_trials(study)  # RUNNING trials of a killed driver -> retried
  left = total - len(_finished(study))
  if left <= 0:
    return

  def after_trial(study, trial):
    with search.lock:
      print(trial_line(trial, search.metric, search.test_metric), flush=True)
    if len(_finished(study)) >= total:
      study.stop()
  study.optimize(run_one, n_trials=left, n_jobs=min(parallel, left), catch=(TrialFailed,),
                 callbacks=[after_trial])


def search_objective(search):
  def run_one(trial):
    params = suggest(trial, search.space)
    number = _retried_from(trial)
    number = trial.number if number is None else number
    return run_trial(trial, search, params, posixpath.join(search.output_dir, f"trial-{number}"),
                     f"trial-{trial.number}")
  return run_one


def seeds_objective(search, best):
  def run_one(trial):
    seed = trial.suggest_int("seed", 0, 2**31 - 1)  # the enqueued seed
    params = {**best.params, "seed": seed}
    return run_trial(trial, search, params, posixpath.join(
        search.output_dir, f"seeds-of-trial-{best.number}", f"seed-{seed}"),
                     f"seeds-of-trial-{best.number}-trial-{trial.number}")
  return run_one


def run_seeds(study, storage, search, seeds, parallel):
  """Re-runs the best trial with seeds 1..N; returns the seed study."""
  best = study.best_trial
  seed_study = optuna.create_study(
      storage=storage, study_name=f"{study.study_name}-seeds-of-trial-{best.number}",
      direction=study.direction, load_if_exists=True, pruner=optuna.pruners.NopPruner())
  queued = {t.params.get("seed", t.system_attrs.get("fixed_params", {}).get("seed"))
            for t in seed_study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)}
  missing = [seed for seed in range(1, seeds + 1) if seed not in queued]
  for seed in missing:  # a seed whose run crashed before is queued again
    seed_study.enqueue_trial({"seed": seed})
  params = " ".join(f"{k}={_short(v)}" for k, v in best.params.items() if k != "seed")
  print(f"seeds: re-running trial {best.number} ({params}) with seeds 1..{seeds}", flush=True)
  waiting = len(seed_study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
  _optimize(seed_study, search, seeds_objective(search, best),
            len(_finished(seed_study)) + waiting, parallel)
  return seed_study


def seeds_summary(seed_study, metric, test_metric):
  """`mean ± SD` lines of the validation objective and the test metric over the seeds."""
  done = [t for t in seed_study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
  lines = []
  for label, values in ((f"validation {metric}", [t.value for t in done]),
                        (f"test {test_metric}", [t.user_attrs.get("test_" + test_metric)
                                                 for t in done])):
    values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if not values:
      continue
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    lines.append(f"seeds: {label} {statistics.mean(values):.4f} ± {sd:.4f} (mean ± SD over "
                 f"{len(values)} seeds: {', '.join(f'{v:.4f}' for v in values)})")
  return lines


def make_sampler(kind, seed):
  if kind == "random":
    return optuna.samplers.RandomSampler(seed=seed)
  return optuna.samplers.TPESampler(seed=seed)


def make_pruner(kind, startup_trials):
  if kind == "none":
    return optuna.pruners.NopPruner()
  return optuna.pruners.MedianPruner(n_startup_trials=startup_trials)


def run(args, job_args):
  """The optuna back-end of launch.sweep; returns the exit code."""
  space = search_space.load(args.space)
  metric, test_metric = check_inputs(space, job_args)
  if not args.storage and "://" in args.output_dir:
    raise ValueError(f"the default SQLite study cannot live in {args.output_dir}: pass "
                     "--storage=<database URL> (or a local --output_dir)")
  tf.io.gfile.makedirs(args.output_dir)
  url = args.storage or f"sqlite:///{os.path.abspath(os.path.join(args.output_dir, 'study.db'))}"
  storage = open_storage(url, args.heartbeat_seconds)
  search = Search(space, list(job_args), args.output_dir, metric, test_metric)
  study = optuna.create_study(
      storage=storage, study_name=args.study or space.name, load_if_exists=True,
      direction=objective.goal(metric), sampler=make_sampler(args.sampler, args.sampler_seed),
      pruner=make_pruner(args.pruner, args.pruner_startup_trials))
  done = len(_finished(study))
  print(f"study {study.study_name} in {redact(url)}: {done} of {space.trials} trials done; "
        f"objective validation {metric} ({objective.goal(metric)})", flush=True)
  _optimize(study, search, search_objective(search), space.trials, args.parallel or space.parallel)
  print(table(study, metric, test_metric), flush=True)
  if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
    print("error: no trial completed", file=sys.stderr)
    return 1
  best = study.best_trial
  print(f"best: trial {best.number} {metric}={best.value:.4f} "
        f"({' '.join(f'{k}={_short(v)}' for k, v in best.params.items())}); model_dir "
        f"{best.user_attrs.get('model_dir')}", flush=True)
  if args.seeds:
    seed_study = run_seeds(study, storage, search, args.seeds, args.parallel or space.parallel)
    print(table(seed_study, metric, test_metric), flush=True)
    for line in seeds_summary(seed_study, metric, test_metric):
      print(line, flush=True)
  return 0


def quiet_optuna():
  """Optuna's own log lines (one per trial, tracebacks of failed ones) give way to ours."""
  optuna.logging.set_verbosity(optuna.logging.ERROR)
  warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
