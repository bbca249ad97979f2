#!/usr/bin/env bash
# The GPU check, for a lent machine with an NVIDIA GPU, torch and transformers but no
# Ray, no pydantic and no package registry (`benchmarks.gpu_reader`: the generation
# engine, static against continuous batching, and checked drafts against `generate` on
# each line alone, with the random TrOCR-base-sized model and the bundled model).
#
#   benchmarks/gpu.sh --fetch      # here, with a registry: pydantic's wheels into .gpu-wheels/
#   benchmarks/gpu.sh [ARGS...]    # there: ARGS go to python -m benchmarks.gpu_reader
#
# .gpu-wheels/ is ignored by git: name it in what travels to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fetch" ]; then
    for version in 3.10 3.11 3.12 3.13; do
        python3 -m pip download --quiet --only-binary :all: --python-version "$version" \
            --platform manylinux2014_x86_64 --dest .gpu-wheels pydantic
    done
    exit 0
fi
if ! python3 -c 'import pydantic' 2>/dev/null; then
    python3 -m venv --system-site-packages .venv-gpu
    . .venv-gpu/bin/activate
    python -m pip install --quiet --no-index --find-links .gpu-wheels pydantic
fi
python3 -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"'
PYTHONPATH=. python3 -m benchmarks.gpu_reader "$@"
