#!/usr/bin/env bash
# Sets up the environment of one world (or both) and runs the test suite in it.
#   bash scripts/test.sh          # both worlds at once: tf1 (Python 3.7, TF 1.15.5) and tf2
#   bash scripts/test.sh tf2      # one world; extra arguments go to pytest
#   bash scripts/test.sh tf2 tests/test_config.py -q   # paths under tests/: only those
# Both worlds run side by side (most tests wait on small graphs or child processes, so two
# suites on two cores take little longer than one); each writes .test-logs/<world>.log, printed
# when both are done. The exit code is non-zero if either fails or collects no test.
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

suite() {   # world, pytest arguments...
  local w=$1 other=tf2 paths=tests a
  shift
  [ "$w" = tf2 ] && other=tf1
  for a in "$@"; do
    case "$a" in tests/*|./tests/*) paths= ;; esac   # a test path given: run only what it names
  done
  echo "== $w: $(${py[$w]} -c 'import sys, tensorflow as tf; print("Python", sys.version.split()[0], "TensorFlow", tf.__version__)' 2>/dev/null)"
  REBAR_OTHER_PYTHON="${py[$other]:-}" "${py[$w]}" -m pytest -q "$@" $paths
}

if [ "$(echo $worlds | wc -w)" = 1 ]; then
  suite $worlds "$@"
  exit
fi
mkdir -p .test-logs
# each world's replay of every model, made once for both worlds' comparison test
REBAR_REPLAY_CACHE=$(mktemp -d)
export REBAR_REPLAY_CACHE
trap 'rm -rf "$REBAR_REPLAY_CACHE"' EXIT
declare -A pid
for w in $worlds; do
  echo "== $w: running (log: .test-logs/$w.log)"
  suite "$w" "$@" >".test-logs/$w.log" 2>&1 &
  pid[$w]=$!
done
status=0
for w in $worlds; do
  code=0
  wait "${pid[$w]}" || code=$?
  cat ".test-logs/$w.log"
  echo "== $w: exit code $code"
  [ "$code" = 0 ] || status=1
done
exit $status
