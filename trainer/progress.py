"""Progress lines and training throughput."""
import dataclasses
import time


def say(message):
  """A progress line: printed and flushed at once (logs are read live on clusters)."""
  print(message, flush=True)


def duration(seconds):
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclasses.dataclass
class Window:
  """The training steps since the last progress line."""
  steps: int = 0
  finite_steps: int = 0
  loss: float = 0.0        # summed over the finite steps
  real: float = 0.0        # real (unpadded) tokens
  padded: float = 0.0      # tokens including padding
  start: float = dataclasses.field(default_factory=time.perf_counter)

  def add(self, losses, finites, real, padded):
    """Adds one train call: losses float [n], finites bool [n], token counts."""
    self.steps += len(losses)
    self.finite_steps += int(finites.sum())
    self.loss += float(losses[finites].sum())
    self.real += float(real)
    self.padded += float(padded)

  def mean_loss(self):
    return self.loss / self.finite_steps if self.finite_steps else float("nan")

  def efficiency(self):
    return self.real / max(self.padded, 1.0)


@dataclasses.dataclass
class Throughput:
  """Steady-state training throughput of this process: every window but the first, which
  holds tracing and compilation."""
  real: float = 0.0
  padded: float = 0.0
  examples: int = 0
  seconds: float = 0.0
  warm: bool = False

  def add(self, window, examples, seconds):
    if self.warm:
      self.real += window.real
      self.padded += window.padded
      self.examples += examples
      self.seconds += seconds
    self.warm = True

  def summary(self):
    """{train_examples_per_sec, train_padding_efficiency}, or {} before any warm window."""
    if not self.seconds:
      return {}
    return {"train_examples_per_sec": self.examples / self.seconds,
            "train_padding_efficiency": self.real / max(self.padded, 1.0)}
