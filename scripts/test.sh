#!/usr/bin/env bash
# Runs the test suite offline: inside a network namespace with only loopback, when possible.
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled CUDA_VISIBLE_DEVICES=""
if unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec .venv/bin/python -m pytest -q "$@"' _ "$@"
fi
echo "test.sh: cannot create a network namespace here; running with the network present" >&2
exec .venv/bin/python -m pytest -q "$@"
