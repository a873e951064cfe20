#!/usr/bin/env bash
# Sets up the environment of one world (or both) and runs the test suite in it.
#   bash scripts/test.sh          # both worlds: tf1 (Python 3.7, TF 1.15.5), then tf2
#   bash scripts/test.sh tf2      # one world; extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
worlds=${1:-both}
[ $# -gt 0 ] && shift
[ "$worlds" = both ] && worlds="tf1 tf2"
declare -A py
for w in tf1 tf2; do
  # the other world's interpreter, when set up, lets tests compare the two TensorFlows
  [ -x ".venv/$w/bin/python" ] && py[$w]=.venv/$w/bin/python
done
for w in $worlds; do py[$w]=$(bash scripts/setup_env.sh "$w"); done
for w in $worlds; do
  other=tf2; [ "$w" = tf2 ] && other=tf1
  echo "== $w: $(${py[$w]} -c 'import sys, tensorflow as tf; print("Python", sys.version.split()[0], "TensorFlow", tf.__version__)' 2>/dev/null)"
  REBAR_OTHER_PYTHON="${py[$other]:-}" "${py[$w]}" -m pytest -q "$@" tests
done
