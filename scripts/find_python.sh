# Sourced by the launchers: sets PYTHON to the interpreter that runs rebar_train.py, or exits
# with a message saying how to set one up, before anything runs. PYTHON from the environment
# wins; else the first of $candidates (set by the caller; default: the project's environments
# .venv/tf2 and .venv/tf1, made by scripts/setup_env.sh, then python3) that imports TensorFlow
# and absl. Expects $root (the project directory) and $launcher (the calling script's name).
if [ -z "${candidates:-}" ]; then
  candidates="$root/.venv/tf2/bin/python $root/.venv/tf1/bin/python python3"
fi
tried="${PYTHON:-$candidates}"
found=""
for candidate in $tried; do
  if "$candidate" -c 'import tensorflow, absl' >/dev/null 2>&1; then found=$candidate; break; fi
done
if [ -z "$found" ]; then
  echo "$launcher: no interpreter that imports tensorflow and absl (tried: $tried). Set one" \
       "up with 'bash scripts/setup_env.sh tf2' (or tf1), or set PYTHON=..." >&2
  exit 1
fi
PYTHON=$found
