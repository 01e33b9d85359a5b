"""Whether and how W&B logs: the one rule both the preprocessing job and the trainer follow.

  WANDB_MODE=offline (or dryrun)   offline: files only, no network, no key needed
  WANDB_MODE=disabled              disabled
  WANDB_MODE=online (or run)       online if an API key is configured, else disabled
  WANDB_DISABLED=true              disabled (W&B's older switch)
  nothing set                      online if an API key is configured, else disabled

"Configured" means WANDB_API_KEY is set or `wandb login` saved one in ~/.netrc. Without a key,
online would stop at a login prompt, so W&B is disabled instead. The key itself is only tested
for presence: never read into a value that is printed, logged or stored.
"""
import netrc
import os

MODES = ("online", "offline", "disabled")
WANDB_HOST = "api.wandb.ai"  # the ~/.netrc machine name `wandb login` writes


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
