#!/usr/bin/env bash
# Creates .venv/<world> from the project's requirement files and prints its python.
#   bash scripts/setup_env.sh tf2   # Python 3.11 + newest TensorFlow 2 (requirements.txt)
#   bash scripts/setup_env.sh tf1   # Python 3.7 + TensorFlow 1.15.5 (requirements-tf1.txt)
# Override the interpreter with PYTHON=/path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
world=${1:-tf2}
case "$world" in
  tf2) req=requirements.txt; want=3.11 ;;
  tf1) req=requirements-tf1.txt; want=3.7 ;;
  *) echo "usage: $0 tf1|tf2" >&2; exit 2 ;;
esac
if [ -z "${PYTHON:-}" ]; then
  pyenv_version=$( (pyenv versions --bare 2>/dev/null || true) | grep "^$want\." | tail -n 1)
  if [ -n "$pyenv_version" ]; then
    PYTHON=$(PYENV_VERSION=$pyenv_version pyenv which "python$want")
  elif command -v "python$want" >/dev/null 2>&1; then
    PYTHON=$(command -v python$want)
  else
    echo "No Python $want found: install it (e.g. pyenv install $want) or set PYTHON=..." >&2
    exit 1
  fi
fi
venv=.venv/$world
stamp=$venv/.installed
if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ]; then
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade "pip<24" >&2
  "$venv/bin/python" -m pip install -q -r "$req" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
