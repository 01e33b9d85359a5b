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
# What was checked and what was not (no TPU or cloud access where this was written):
# - tensorflow-tpu==2.20.0 exists on PyPI and requires libtpu~=0.0.14 (read from its metadata).
# - TensorFlow's own TPU Dockerfiles install it as
#   `pip install tensorflow-tpu -f https://storage.googleapis.com/libtpu-tf-releases/index.html`;
#   that index is kept as a source for libtpu here.
# - NOT verified: which libtpu release TF 2.20 was tested with. pip takes the newest that fits
#   ~=0.0.14; if TensorFlow fails to initialise the TPU, pin one: LIBTPU_VERSION=0.0.x bash ...
# - NOT verified: whether TF 2.20 on these images needs the PJRT variables that Google's
#   TF 2.15/2.16 notes set (NEXT_PLUGGABLE_DEVICE_USE_C_API=true,
#   TF_PLUGGABLE_DEVICE_LIBRARY_PATH=<libtpu.so>); export them before training if the TPU check
#   below reports no TPU devices.
# - The default runtime images (launch/validation.py: tpu-ubuntu2204-base for v2-v4,
#   v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e) are Google's
#   framework-neutral images; a TensorFlow image (tpu-vm-tf-2.20.0-...) may exist too, but this
#   script does not rely on one (pass --runtime_version to use it).
set -euo pipefail
cd "$(dirname "$0")/.."

TF_VERSION=2.20.0
VENV="${VENV:-$HOME/bert-venv}"
PYTHON="${PYTHON:-python3.11}"
LIBTPU_SPEC="libtpu~=0.0.14"  # tensorflow-tpu 2.20.0's own requirement
[ -z "${LIBTPU_VERSION:-}" ] || LIBTPU_SPEC="libtpu==$LIBTPU_VERSION"

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
"${PIP[@]}" "$LIBTPU_SPEC" -f https://storage.googleapis.com/libtpu-tf-releases/index.html

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
