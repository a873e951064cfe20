#!/usr/bin/env bash
# ModelZoo-style training on one device, to accuracy: the documented configuration
# (SBNDynamicRebar, 2 linear layers, MNIST, learning_rate 0.0003) for --train_steps steps.
#   bash scripts/train_full_1p.sh --data_path=/data/mnist [--output_path=DIR]
#        [--train_steps=2000000] [--batch_size=24] [other rebar_train flags...]
# The log goes to $output_path/$ASCEND_DEVICE_ID/train_$ASCEND_DEVICE_ID.log (output_path
# default: test/output), the summary (ActualFPS, TrainingTime, ActualLoss, TrainAccuracy, ...) to
# ${CaseName}.log beside it and to stdout. The run directory, $output_path/$ASCEND_DEVICE_ID/run_full,
# is kept: running the script again resumes the run. ActualLoss is the negative training ELBO
# of the last epoch line; TrainAccuracy is the last test bound (IWAE, 100 samples).
mode=full
Network="REBAR_SBNDynamicRebar_for_TensorFlow"
train_steps=2000000
extra_flags=()
source "$(dirname "$0")/modelzoo_common.sh"
