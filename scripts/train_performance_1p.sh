#!/usr/bin/env bash
# ModelZoo-style performance run on one device: the documented configuration for a short run
# (default 1000 steps), no evaluation, checkpoint at the end only, from scratch every time.
#   bash scripts/train_performance_1p.sh --data_path=/data/mnist [--output_path=DIR]
#        [--train_steps=1000] [--batch_size=24] [other rebar_train flags...]
# ActualFPS (images/s) is the mean of rebar_train's per-interval progress lines (--log_every),
# leaving out the first interval, which holds graph compilation; TrainingTime is ms per step.
mode=perf
Network="REBAR_SBNDynamicRebar_for_TensorFlow"
train_steps=1000
extra_flags=(--eval_freq=0 --checkpoint_secs=0)
source "$(dirname "$0")/modelzoo_common.sh"
