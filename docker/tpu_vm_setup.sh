#!/usr/bin/env bash
# Prepares a Cloud TPU VM to run this package's trainer with TPUStrategy (--strategy=tpu --tpu=local).
# `python -m launch.submit tpu_vm` copies the repository to ~/bert-tf-finetune on every TPU VM
# worker and runs this script there; it can also be run by hand from that directory.
#
# What it does: a venv ($VENV, default ~/bert-venv) with Python 3.11 (constraints.txt needs it:
# numpy 2.4, scipy 1.17 and pandas 3 need >= 3.11, and the TPU VM images are Ubuntu 22.04 with
# Python 3.10), the pinned set (`pip install -c constraints.txt .`), then TensorFlow's TPU build of
# the same version in place of the CPU/GPU build.
#
# What was checked, on a machine without a TPU or Google Cloud access (the install steps below were
# run there; the import check cannot finish there, it waits for a TPU VM's metadata server), and
# what was not:
# - tensorflow-tpu==2.20.0 is on PyPI and requires libtpu~=0.0.14 (its metadata). The steps below
#   install cleanly on Python 3.11 and `pip check` is clean afterwards; `import tensorflow` then
#   loads the TPU build (it loads libtpu).
# - libtpu must be pinned: with the newest release pip picks (0.0.52 at the time of writing),
#   `import tensorflow` aborts with "ConfigureDistributedTpuOp_DoWork not available in this
#   library" -- recent libtpu builds dropped TensorFlow's TPU entry points (0.0.14 and 0.0.21 still
#   export that symbol, 0.0.52 does not). The default pin is 0.0.14, the release that
#   tensorflow-tpu 2.20.0 names as its minimum; override with LIBTPU_VERSION=0.0.x.
# - NOT verified (no TPU here): that training runs on a TPU with this pair, and whether TF 2.20 on
#   these images needs the PJRT variables of Google's TF 2.15/2.16 notes
#   (NEXT_PLUGGABLE_DEVICE_USE_C_API=true, TF_PLUGGABLE_DEVICE_LIBRARY_PATH=<libtpu.so>); export
#   them before training if the TPU check at the end reports no TPU devices.
# - TensorFlow's own TPU Dockerfiles add `-f https://storage.googleapis.com/libtpu-tf-releases/index.html`
#   to find libtpu; the pinned release is on PyPI, so that index is not needed here.
# - The default runtime images (launch/validation.py: tpu-ubuntu2204-base for v2-v4,
#   v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e) are Google's
#   framework-neutral images; a TensorFlow image (tpu-vm-tf-2.20.0-...) may exist too, but this
#   script does not rely on one (pass --runtime_version to use it).
set -euo pipefail
cd "$(dirname "$0")/.."

TF_VERSION=2.20.0
VENV="${VENV:-$HOME/bert-venv}"
PYTHON="${PYTHON:-python3.11}"
LIBTPU_VERSION="${LIBTPU_VERSION:-0.0.14}"  # see the notes above

if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c "import ensurepip" >/dev/null 2>&1; then
  # Ubuntu 22.04 ships Python 3.11 in its universe component.
  sudo apt-get update -q
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11 python3.11-venv
  PYTHON=python3.11
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)

"${PIP[@]}" --upgrade "pip>=24"
"${PIP[@]}" -c constraints.txt .
# tensorflow-tpu installs the same `tensorflow` module as tensorflow; installing it last, over the
# files of the pinned tensorflow==2.20.0 (which tensorflow-text requires by name), makes the TPU
# build the one that is imported. Its other dependencies are the ones already installed.
"${PIP[@]}" --no-deps --force-reinstall "tensorflow-tpu==$TF_VERSION"
"${PIP[@]}" "libtpu==$LIBTPU_VERSION"

# Fail here, in one line, rather than at the first training step.
"$VENV/bin/python" -c "import bertcore, tensorflow as tf, tensorflow_text; print('tensorflow', tf.__version__)"
if [ -z "${SKIP_TPU_CHECK:-}" ]; then
  "$VENV/bin/python" - <<'EOF'
import bertcore  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
tf.config.experimental_connect_to_cluster(resolver)
tf.tpu.experimental.initialize_tpu_system(resolver)
devices = tf.config.list_logical_devices("TPU")
print(f"tpu_vm_setup: {len(devices)} TPU devices")
if not devices:
  raise SystemExit("error: TensorFlow sees no TPU devices (see the notes in docker/tpu_vm_setup.sh)")
EOF
fi
echo "tpu_vm_setup: ready ($VENV)"
