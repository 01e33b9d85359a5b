"""Whether and how W&B logs: the one rule the preprocessing job, the trainer and scoring follow.

  WANDB_MODE=offline (or dryrun)   offline: files only, no network, no key needed
  WANDB_MODE=disabled              disabled
  WANDB_MODE=online (or run)       online if an API key is configured, else disabled
  WANDB_DISABLED=true              disabled (W&B's older switch)
  nothing set                      online if an API key is configured, else disabled

"Configured" means WANDB_API_KEY is set or `wandb login` saved one in ~/.netrc. Without a key,
online would stop at a login prompt, so W&B is disabled instead. The key itself is only tested
for presence: never read into a value that is printed, logged or stored.

Also shared by every job that logs: `sanitize` (secrets out of configs), `key_hidden_unless_online`
(the key out of W&B's own processes when it is not needed) and the artifact names that link data,
model and predictions (`dataset_digest`, `dataset_artifact`, `model_artifact`).
"""
import contextlib
import hashlib
import netrc
import os
import re

MODES = ("online", "offline", "disabled")
WANDB_HOST = "api.wandb.ai"  # the ~/.netrc machine name `wandb login` writes
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|credential)", re.IGNORECASE)
REDACTED = "<redacted>"


def api_key_configured():
  """True when W&B has a key: WANDB_API_KEY or a `wandb login` entry in ~/.netrc."""
  if os.environ.get("WANDB_API_KEY"):
    return True
  try:
    return netrc.netrc().authenticators(WANDB_HOST) is not None
  except (OSError, netrc.NetrcParseError):  # No ~/.netrc, or one W&B cannot use either.
    return False


def resolve_mode(requested="auto"):
  """online | offline | disabled. `requested` other than auto (a config value) wins as is."""
  if requested != "auto":
    return requested
  env = os.environ.get("WANDB_MODE", "").strip().lower()
  if env in ("offline", "dryrun"):
    return "offline"
  if env in ("disabled", "dryrun-disabled"):
    return "disabled"
  if os.environ.get("WANDB_DISABLED", "").strip().lower() in ("1", "true"):
    return "disabled"
  return "online" if api_key_configured() else "disabled"


def sanitize(value, secrets=None):
  """A copy of a nested config with secret-looking keys and any known secret value redacted."""
  if secrets is None:
    secrets = [s for s in (os.environ.get("WANDB_API_KEY"),) if s]
  if isinstance(value, dict):
    return {k: (REDACTED if SECRET_KEY.search(str(k)) else sanitize(v, secrets))
            for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(sanitize(v, secrets) for v in value)
  if isinstance(value, str):
    for s in secrets:
      value = value.replace(s, REDACTED)
  return value


@contextlib.contextmanager
def key_hidden_unless_online(mode):
  """Keeps WANDB_API_KEY out of W&B's processes and files when it is not needed (offline)."""
  key = os.environ.pop("WANDB_API_KEY", None) if mode != "online" else None
  try:
    yield
  finally:
    if key is not None:
      os.environ["WANDB_API_KEY"] = key


def dataset_digest(manifest):
  """A short, stable name for a data version (a bertcore.schema.Manifest): the hash of its
  split/shard counts, vocabulary and labels."""
  key = repr(sorted((s, sorted(info.shards.items()), info.rows)
                    for s, info in manifest.splits.items()))
  key += manifest.vocab_sha256 + repr(manifest.labels)
  return hashlib.sha256(key.encode()).hexdigest()[:12]


def dataset_artifact(manifest):
  """The W&B `dataset` artifact name of preprocessed data (the trainer uses it as its input)."""
  return f"data-{dataset_digest(manifest)}"


def model_artifact(manifest):
  """The W&B `model` artifact name of an export trained on that data (the trainer logs it)."""
  return f"model-{dataset_digest(manifest)}"
