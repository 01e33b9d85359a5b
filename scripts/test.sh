#!/usr/bin/env bash
# Runs the test suite offline: inside a network namespace with only loopback, when possible.
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled CUDA_VISIBLE_DEVICES=""
# Two workers (pytest-xdist), one test file each at a time (module fixtures are built once):
# most tests wait on one Python thread (TensorFlow's import and tracing, Beam, subprocesses),
# so two keep both of CI's cores busy. `scripts/test.sh -n 0` runs in one process.
set -- -n 2 --dist loadfile "$@"
if unshare -n true 2>/dev/null; then
  # CI_OFFLINE=1 lets tests/test_secrets.py check that the network really is absent.
  exec unshare -n bash -c 'ip link set lo up && CI_OFFLINE=1 exec .venv/bin/python -m pytest -q "$@"' _ "$@"
fi
echo "test.sh: cannot create a network namespace here; running with the network present" >&2
exec .venv/bin/python -m pytest -q "$@"
