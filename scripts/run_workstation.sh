#!/usr/bin/env bash
# Workstation launcher (CPU or GPU, TF 1.15 or TF 2): the documented configuration.
#   bash scripts/run_workstation.sh --max_steps=5000        # minutes on a CPU
#   bash scripts/run_workstation.sh                         # the full 2,000,000 steps
#   bash scripts/run_workstation.sh --hparams=n_layer=1     # the documented configuration, one layer
# Flags go to rebar_train.py. The documented configuration is the base: --hparams and the
# aliases (--learning_rate, --batch_size) change it name by name. PYTHON chooses the interpreter
# (default: .venv/tf2, else .venv/tf1, made by scripts/setup_env.sh, else python3). Rerun the same
# command to resume.
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
launcher=run_workstation
cd "$root"
source "$root/scripts/find_python.sh"
exec "$PYTHON" -u rebar_train.py \
  --base_hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn" "$@"
