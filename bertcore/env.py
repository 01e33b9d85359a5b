"""Process environment: Keras 2 selection, oneDNN CPU kernels, TF's C++ log level, the TF
version lock-step check."""
import contextlib
import ctypes
import logging
import os
import platform
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
  """Selects Keras 2 and oneDNN, and exits with one line if the TF stack is mismatched."""
  if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if onednn_wanted():
      os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  elif os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    # TF picks its Keras at import; too late to switch. Say so instead of failing later.
    sys.exit("error: TensorFlow was imported before this package; set TF_USE_LEGACY_KERAS=1 "
             "in the environment or import this package first")
  # The user's own TF_CPP_MIN_LOG_LEVEL wins (0 shows everything).
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", default_tf_log_level())
  problem = version_problem()
  if problem:
    sys.exit(f"error: {problem}")


def onednn_wanted():
  """True on Linux x86-64, where TensorFlow's own default may leave oneDNN off.

  TF 2.20's Linux wheels turn their oneDNN CPU kernels on only for CPUs with AVX512_VNNI,
  AVX512_BF16, AVX_VNNI or AMX (tensorflow/core/util/util.cc); on the others (AVX2-only CPUs,
  AVX-512 without VNNI) matmuls run on Eigen's kernels instead, slower for a BERT step (the
  ours_f32_eigen rows of benchmarks/results/vs_pytorch.md). oneDNN dispatches on the CPU's ISA
  itself (AVX2 and up), so asking for it suits every x86-64 CPU; the user's own
  TF_ENABLE_ONEDNN_OPTS wins.
  """
  return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def cuda_driver_present():
  """True if the NVIDIA driver library loads, i.e. TensorFlow's CUDA probe can succeed."""
  try:
    ctypes.CDLL("libcuda.so.1")  # What TensorFlow's CUDA probe loads; absent on CPU machines.
  except OSError:
    return False
  return True


def default_tf_log_level():
  """The TF_CPP_MIN_LOG_LEVEL to use when the user set none: "2" or "3".

  Level 2 hides TensorFlow's C++ INFO and WARNING lines (cudart_stub, cpu_feature_guard, oneDNN
  notes). Without a CUDA driver the C++ ERROR lines of a normal run are noise too: the CUDA probe
  failing (`failed call to cuInit ... (303)`) and `oneDNN supports DT_INT64 only on platforms
  with AVX-512`; real failures reach Python as exceptions, which our entry points print as one
  `error:` line. With a driver, ERROR lines may explain a GPU failure (cuDNN, out of memory), so
  they stay: level 2.
  """
  return "2" if cuda_driver_present() else "3"


@contextlib.contextmanager
def quiet_optional_imports():
  """Silences Python logging while a library logs its missing optional extras at import.

  apache_beam logs `Failed to import GCSFileSystem ...` and `apitools not found ...` on import
  when the GCS extras are not installed; that says nothing to a job without gs:// paths (those
  get one line naming the extra to install, see bertcore.csv_source.check_filesystems).
  """
  previous = logging.root.manager.disable
  logging.disable(logging.WARNING)
  try:
    yield
  finally:
    logging.disable(previous)
