#!/usr/bin/env bash
# Ascend bare-metal launcher: the CANN environment, one NPU, then rebar_train.py.
#   bash scripts/run_ascend.sh [rebar_train flags...]
#   ASCEND_DEVICE_ID=3 bash scripts/run_ascend.sh --max_steps=2000000
# Runs the documented configuration; --hparams and the aliases change it name by name.
# Sources the CANN environment scripts that exist under $ASCEND_HOME (default /usr/local/Ascend):
# the toolkit's or nnae's set_env.sh, then the TensorFlow plugin's (it provides npu_bridge).
# Without them it runs with the current environment, and --device auto picks a GPU or the CPU.
# PYTHON chooses the interpreter (default: python3, which on an Ascend server has the CANN
# toolkit's TensorFlow 1.15, else .venv/tf1 or .venv/tf2 when set up).
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ascend_home=${ASCEND_HOME:-/usr/local/Ascend}
sourced=""
for env_script in "$ascend_home/ascend-toolkit/set_env.sh" "$ascend_home/nnae/set_env.sh" \
                  "$ascend_home/tfplugin/set_env.sh"; do
  if [ -f "$env_script" ]; then
    set +e   # an environment script's own failing probes must not stop the launch
    # shellcheck disable=SC1090
    source "$env_script"
    set -e
    sourced="$sourced $env_script"
  fi
done
if [ -n "$sourced" ]; then
  echo "run_ascend: sourced$sourced" >&2
else
  echo "run_ascend: no CANN environment scripts under $ascend_home; running as is" >&2
fi
# One device, one process: the variables the CANN runtime reads.
export ASCEND_DEVICE_ID=${ASCEND_DEVICE_ID:-0}
export RANK_SIZE=${RANK_SIZE:-1}
export RANK_ID=${RANK_ID:-0}
export JOB_ID=${JOB_ID:-10087}
echo "run_ascend: ASCEND_DEVICE_ID=$ASCEND_DEVICE_ID" >&2
cd "$root"
launcher=run_ascend
candidates="python3 $root/.venv/tf1/bin/python $root/.venv/tf2/bin/python"
source "$root/scripts/find_python.sh"
exec "$PYTHON" -u rebar_train.py \
  --base_hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn" "$@"
