"""The declarative search space of a hyper-parameter search: a small YAML file, checked.

  # configs/search/<name>.yaml
  metric: best_f1          # optional: the trial's --objective (default: eval.best_metric)
  trials: 12               # trials of the search
  parallel: 1              # trials at a time
  parameters:              # name: {log_uniform | uniform | int: [low, high]} or {choice: [...]}
    learning_rate: {log_uniform: [1.0e-5, 1.0e-4]}
    epochs: {int: [2, 4]}
    dropout: {choice: [0.0, 0.1]}

Each parameter name maps to one trainer.task flag (PARAMETERS); max_seq_length and truncation
are preprocessing choices, so they are searched as `data_dir: {choice: [<dir per setting>]}`.
The three back-ends (launch/optuna_search.py, wandb_sweep.py, vertex.py) render the same
Space. TensorFlow-free: the launchers import it.
"""
import dataclasses
import os

import yaml

# Search-space name -> the trainer.task flag it sets (each a config field but data_dir).
PARAMETERS = {
    "learning_rate": "config.train.learning_rate",
    "epochs": "config.train.epochs",
    "warmup_fraction": "config.train.warmup_fraction",
    "dropout": "config.model.dropout",
    "encoder_dropout": "config.encoder.dropout",
    "layer_decay": "config.train.layer_decay",
    "weight_decay": "config.train.weight_decay",
    "batch_size": "config.train.global_batch_size",
    "seed": "config.train.seed",
    "data_dir": "data_dir",   # a preprocessed dir per max_seq_length / truncation setting
}
KINDS = ("log_uniform", "uniform", "int", "choice")
KEYS = ("metric", "trials", "parallel", "parameters")


@dataclasses.dataclass(frozen=True)
class Parameter:
  name: str           # a PARAMETERS key
  kind: str           # one of KINDS
  low: float = None   # numeric kinds
  high: float = None
  values: tuple = ()  # choice

  @property
  def flag(self):
    return PARAMETERS[self.name]


@dataclasses.dataclass(frozen=True)
class Space:
  parameters: tuple   # of Parameter, in file order
  metric: str = ""    # "" = the config's eval.best_metric
  trials: int = 12
  parallel: int = 1
  name: str = "search"  # the file's base name: the default study name

  def flags(self, params):
    """trainer.task flags for {parameter name: value}: ["--config.train.seed=3", ...]."""
    return [f"--{PARAMETERS[name]}={value}" for name, value in params.items()]


def _number(value, where):
  """A number; a string such as "1e-5" counts (YAML reads 1e-5 without a dot as a string)."""
  if isinstance(value, str):
    try:
      return int(value) if value.strip().lstrip("-").isdigit() else float(value)
    except ValueError:
      pass
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f"{where}: {value!r} is not a number")
  return value


def parse_parameter(name, spec):
  """One `name: {kind: ...}` entry -> Parameter; raises ValueError with one line."""
  if name not in PARAMETERS:
    raise ValueError(f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}")
  if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
    raise ValueError(f"parameter {name}: write one of {', '.join(f'{{{k}: ...}}' for k in KINDS)}"
                     f", got {spec!r}")
  kind, value = next(iter(spec.items()))
  if kind == "choice":
    if not isinstance(value, list) or not value:
      raise ValueError(f"parameter {name}: choice needs a non-empty list, got {value!r}")
    if len(set(map(str, value))) != len(value):
      raise ValueError(f"parameter {name}: choice lists a value twice: {value!r}")
    if name != "data_dir":
      value = [_number(v, f"parameter {name}") for v in value]
    return Parameter(name, kind, values=tuple(value))
  if not isinstance(value, list) or len(value) != 2:
    raise ValueError(f"parameter {name}: {kind} needs [low, high], got {value!r}")
  low, high = (_number(v, f"parameter {name}") for v in value)
  if not low < high:
    raise ValueError(f"parameter {name}: empty or inverted range [{low}, {high}] (low < high)")
  if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
    raise ValueError(f"parameter {name}: int needs whole bounds, got [{low}, {high}]")
  if kind == "int" and name not in ("epochs", "batch_size", "seed"):
    raise ValueError(f"parameter {name}: is not an integer setting; use uniform or choice")
  if kind in ("uniform", "log_uniform") and name in ("epochs", "batch_size", "seed"):
    raise ValueError(f"parameter {name}: is an integer setting; use int or choice")
  if kind == "log_uniform" and low <= 0:
    raise ValueError(f"parameter {name}: log_uniform needs low > 0, got {low}")
  if kind == "int":
    low, high = int(low), int(high)
  return Parameter(name, kind, low=low, high=high)


def parse(data, name="search"):
  """A loaded YAML mapping -> Space; raises ValueError with one line."""
  if not isinstance(data, dict):
    raise ValueError("a search space file holds a mapping with a `parameters:` entry")
  unknown = sorted(set(data) - set(KEYS))
  if unknown:
    raise ValueError(f"unknown search space key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
  parameters = data.get("parameters")
  if not isinstance(parameters, dict) or not parameters:
    raise ValueError("the search space has no parameters")
  trials, parallel = data.get("trials", 12), data.get("parallel", 1)
  for key, value in (("trials", trials), ("parallel", parallel)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{key} must be a whole number >= 1, got {value!r}")
  metric = data.get("metric") or ""
  if not isinstance(metric, str):
    raise ValueError(f"metric must be a metric name, got {metric!r}")
  return Space(tuple(parse_parameter(k, v) for k, v in parameters.items()), metric=metric,
               trials=trials, parallel=parallel, name=name)


def load(path):
  """Reads and checks a search space file (a local file: the launcher's own input)."""
  try:
    with open(path, encoding="utf-8") as f:
      data = yaml.safe_load(f)
  except OSError as e:
    raise ValueError(f"cannot read search space file {path}: {e.strerror}") from None
  except yaml.YAMLError as e:
    raise ValueError(f"cannot parse {path}: {' '.join(str(e).split())}") from None
  name = os.path.splitext(os.path.basename(path))[0]
  try:
    return parse(data, name=name)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
