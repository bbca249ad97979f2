#!/usr/bin/env bash
# The bundled model's GPU recipe: the model trains on one GPU for MINUTES, warm-started
# from the committed model, on lines that every core but one renders while it trains
# (`jobs.train_streamed`: no shards on disk, no Ray). Run from a checkout's root
# on a machine with an NVIDIA GPU, torch and the project's dependencies, and the
# training fonts (`infra/install-fonts.sh`).
#
#   infra/gpu-train.sh OUTPUT [MINUTES]     # MINUTES 8 by default
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:?usage: infra/gpu-train.sh OUTPUT [MINUTES]}
minutes=${2:-8}
python3 -m jobs.train_streamed --output "$output" --init-from shardscribe/printed-lines \
    --minutes "$minutes" --batch-size 128 --workers $(($(nproc) - 1)) --page-lines 0.1 \
    --seed 5 --save-every-minutes 1.5
