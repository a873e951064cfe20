# The body of train_full_1p.sh and train_performance_1p.sh (sourced, not run): argument parsing,
# the training run through run_ascend.sh, and the ModelZoo summary. Expects mode (full|perf),
# Network, train_steps and extra_flags (an array) to be set.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data_path=""
output_path="$root/test/output"
batch_size=""
passed=()
for para in "$@"; do
  case "$para" in
    --data_path=*) data_path=${para#*=} ;;
    --output_path=*) output_path=${para#*=} ;;
    --train_steps=*) train_steps=${para#*=} ;;
    --batch_size=*) batch_size=${para#*=} ;;
    -h|--help) sed -n '2,/^mode=/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passed+=("$para") ;;
  esac
done
if [ -z "$data_path" ]; then
  echo "[Error] para \"data_path\" must be given: the directory of the MNIST files (docs/data.md)" >&2
  exit 1
fi
# The interpreter run_ascend.sh will use, checked before anything runs or is summarised.
launcher="train_${mode}_1p"
candidates="python3 $root/.venv/tf1/bin/python $root/.venv/tf2/bin/python"
source "$root/scripts/find_python.sh"
export PYTHON
export ASCEND_DEVICE_ID=${ASCEND_DEVICE_ID:-0}
RANK_SIZE=1
out_dir="$output_path/$ASCEND_DEVICE_ID"
run_dir="$out_dir/run_$mode"
log="$out_dir/train_$ASCEND_DEVICE_ID.log"
mkdir -p "$out_dir"
# A progress line (steps/s, images/s) every 1% of the run, at most every 1000 steps (full), or
# every 10% and at most every 100 steps (performance).
if [ "$mode" = perf ]; then
  rm -rf "$run_dir"   # a performance run measures a fresh start
  every=$((train_steps / 10)); cap=100
else
  every=$((train_steps / 100)); cap=1000
fi
[ "$every" -lt 1 ] && every=1
[ "$every" -gt "$cap" ] && every=$cap
extra_flags+=(--log_every="$every")
flags=(--data_path="$data_path" --working_dir="$run_dir" --steps="$train_steps" "${extra_flags[@]}")
[ -n "$batch_size" ] && flags+=(--batch_size="$batch_size")

echo "train_${mode}_1p: log $log" >&2
# The log is appended to, so that a rerun (a resume) keeps the earlier part of the run; each
# launch starts with a marker line, and the speed figures come from the last launch only.
marker="== train_${mode}_1p launched $(date '+%Y-%m-%d %H:%M:%S') =="
echo "$marker" >> "$log"
start_time=$(date +%s)
rc=0
bash "$root/scripts/run_ascend.sh" "${flags[@]}" "${passed[@]}" >> "$log" 2>&1 || rc=$?
end_time=$(date +%s)
e2e_time=$((end_time - start_time))
if [ "$rc" -ne 0 ]; then
  echo "[Error] rebar_train exited with code $rc; see $log" >&2
  tail -n 5 "$log" >&2
  exit "$rc"
fi
this_launch=$(awk -v m="$marker" '$0 == m {buf = ""; next} {buf = buf $0 "\n"} END {printf "%s", buf}' "$log")

# The batch size actually used: the hparams line the driver prints first.
BatchSize=$(grep -o "'batch_size': [0-9]*" "$log" | head -n 1 | awk '{print $2}')
BatchSize=${BatchSize:-${batch_size:-24}}
# Images per second over the progress intervals, the first (compilation) left out when possible.
ActualFPS=$(echo "$this_launch" | grep -o '[0-9.]* images/s' | awk '{v[NR] = $1}
  END {s = 0; n = 0; for (i = (NR > 1 ? 2 : 1); i <= NR; i++) {s += v[i]; n++}
       if (n) printf "%.2f", s / n; else print "N/A"}')
if [ "$ActualFPS" = N/A ]; then
  TrainingTime=N/A
else
  TrainingTime=$(awk -v b="$BatchSize" -v f="$ActualFPS" 'BEGIN {printf "%.2f", b * 1000 / f}')
fi
first_number() { sed 's/^[A-Za-z]* [0-9]*: \[ *//' | awk '{print $1}'; }
elbo=$(grep '^Step [0-9]*: \[' "$log" | tail -n 1 | first_number)
ActualLoss=N/A
[ -n "$elbo" ] && ActualLoss=$(awk -v e="$elbo" 'BEGIN {printf "%.4f", -e}')
TrainAccuracy=$(grep '^Test [0-9]*: \[' "$log" | tail -n 1 | first_number)
TrainAccuracy=${TrainAccuracy:-N/A}
DeviceType=$(uname -m)
CaseName="${Network}_bs${BatchSize}_${RANK_SIZE}p_$([ "$mode" = full ] && echo acc || echo perf)"

echo "------------------ Final result ------------------"
echo "Final Performance images/sec : $ActualFPS"
echo "E2E Training Duration sec : $e2e_time"
[ "$mode" = full ] && echo "Final Train Accuracy : $TrainAccuracy"
summary="$out_dir/$CaseName.log"
{
  echo "Network = $Network"
  echo "RankSize = $RANK_SIZE"
  echo "BatchSize = $BatchSize"
  echo "DeviceType = $DeviceType"
  echo "CaseName = $CaseName"
  echo "ActualFPS = $ActualFPS"
  echo "TrainingTime = $TrainingTime"
  echo "ActualLoss = $ActualLoss"
  echo "E2ETrainingTime = $e2e_time"
  [ "$mode" = full ] && echo "TrainAccuracy = $TrainAccuracy"
} > "$summary"
cat "$summary"
