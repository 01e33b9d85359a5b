"""The W&B Sweeps back-end: the sweep YAML for a search space, and the commands that run it.

W&B's agent starts each run as the sweep's `command`; `${args_no_boolean_flags}` expands to
`--<parameter>=<value>` for every parameter (a boolean as a bare `--flag`, or nothing when
false, which absl boolean flags need). The runs are the trial contract of trainer.task:
--model_dir_per_trial gives each its own model_dir (the agent sets WANDB_RUN_ID), and
--objective puts `objective/<metric>` into the run's history and summary (the sweep metric).
"""
import shlex

import yaml


# W&B's distribution names for the search space kinds.
DISTRIBUTIONS = {"log_uniform": "log_uniform_values", "uniform": "uniform",
                 "int": "int_uniform"}
OBJECTIVE_PREFIX = "objective/"   # trainer/objective.py's W&B key (TensorFlow-free copy)


def parameter(p):
  """One search space Parameter -> a W&B sweep `parameters` entry."""
  if p.kind == "choice":
    return {"values": list(p.values)}
  return {"distribution": DISTRIBUTIONS[p.kind], "min": p.low, "max": p.high}


def build_sweep(space, metric, goal, job_args, model_dir, project, method="bayes"):
  """The sweep configuration (a dict, as `wandb sweep <file>` reads it)."""
  return {
      "program": "trainer/task.py",  # informational: `command` runs `-m trainer.task`
      "name": space.name,
      "project": project,
      "method": method,
      "metric": {"name": OBJECTIVE_PREFIX + metric, "goal": goal},
      "run_cap": space.trials,
      # Stops weak runs on the per-evaluation values of the metric.
      "early_terminate": {"type": "hyperband", "min_iter": 1},
      "parameters": {p.flag: parameter(p) for p in space.parameters},
      "command": ["${env}", "${interpreter}", "-m", "trainer.task", *job_args,
                  f"--model_dir={model_dir}", "--model_dir_per_trial", f"--objective={metric}",
                  "--config.wandb.mode=online", f"--config.wandb.project={project}",
                  "${args_no_boolean_flags}"],
  }


def render(sweep):
  return yaml.safe_dump(sweep, sort_keys=False, default_flow_style=False)


def commands(sweep_file, project, parallel, runs_per_agent):
  """The shell commands: create the sweep, then start `parallel` agents (one per machine/GPU)."""
  return [shlex.join(["wandb", "sweep", "--project", project, sweep_file]),
          f"wandb agent --count {runs_per_agent} <ENTITY>/{project}/<SWEEP_ID>  "
          f"# on each of {parallel} machine(s); `wandb sweep` prints the sweep id"]
