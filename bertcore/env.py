"""Process environment: Keras 2 selection and the TF version lock-step check."""
import os
import sys
from importlib import metadata

# The three packages ship compiled ops / APIs for one TensorFlow minor only.
REQUIRED_MINOR = {"tensorflow": "2.20", "tensorflow-text": "2.20", "tf-keras": "2.20"}
INSTALL_HINT = ("pip install -c constraints.txt -e .  "
                "(tensorflow==2.20.0 tensorflow-text==2.20.1 tf-keras==2.20.1)")


def version_problem():
  """Returns a one-line description of a version mismatch, or None if all is well."""
  found = {}
  for package, minor in REQUIRED_MINOR.items():
    try:
      found[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      return f"{package} is not installed; install the pinned set: {INSTALL_HINT}"
  bad = [f"{p}=={v}" for p, v in found.items()
         if ".".join(v.split(".")[:2]) != REQUIRED_MINOR[p]]
  if bad:
    return (f"incompatible versions {', '.join(bad)} (all of tensorflow, tensorflow-text and "
            f"tf-keras must be 2.20.x); install the pinned set: {INSTALL_HINT}")
  return None


def configure():
  """Selects Keras 2 and exits with one line if the TF stack is mismatched."""
  if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  elif os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    # TF picks its Keras at import; too late to switch. Say so instead of failing later.
    sys.exit("error: TensorFlow was imported before this package; set TF_USE_LEGACY_KERAS=1 "
             "in the environment or import this package first")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  problem = version_problem()
  if problem:
    sys.exit(f"error: {problem}")
