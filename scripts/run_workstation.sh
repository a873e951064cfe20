#!/usr/bin/env bash
# Workstation launcher (CPU or GPU, TF 1.15 or TF 2): the documented configuration.
#   bash scripts/run_workstation.sh --max_steps=5000        # minutes on a CPU
#   bash scripts/run_workstation.sh                         # the full 2,000,000 steps
# Flags go to rebar_train.py; the last --hparams wins. PYTHON chooses the interpreter (default:
# .venv/tf2/bin/python when scripts/setup_env.sh has made it, else python3). Rerun the same
# command to resume.
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/tf2/bin/python ]; then PYTHON=.venv/tf2/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import tensorflow, absl' >/dev/null 2>&1; then
  echo "run_workstation: $PYTHON cannot import tensorflow and absl; set up with" \
       "'bash scripts/setup_env.sh tf2' (or tf1), or set PYTHON=..." >&2
  exit 1
fi
exec "$PYTHON" -u rebar_train.py \
  --hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn" "$@"
