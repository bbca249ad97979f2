#!/usr/bin/env bash
# The GPU check of the generation engine, one script for a machine with one NVIDIA GPU
# (under 8 minutes): static batches against continuous batching on the mixed-length
# workload (`shardscribe bench --workload mixed`), with the random small and base models
# (TrOCR-small and -base dimensions) and the bundled model, dtype auto (bfloat16 on a
# GPU that has it). Prints one row per model and leaves the JSON in gpu-bench.jsonl.
#
#   benchmarks/gpu.sh            # IMAGES=512 BATCH=64 by default
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${IMAGES:-512}
BATCH=${BATCH:-64}
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
python -m pip install --quiet --upgrade pip
# PyPI's Linux torch wheel is the CUDA build; the pins (infra/constraints.txt) keep the
# rest as tested. torchvision gives transformers' fast image processors.
pip install --quiet -c infra/constraints.txt torch==2.13.0 -e '.[gpu]'
python -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print(torch.cuda.get_device_name(0))'
rm -f gpu-bench.jsonl
for model in small base shardscribe/printed-lines; do
    shardscribe bench --workload mixed --model "$model" --images "$IMAGES" \
        --batch-size "$BATCH" --dir .gpu-bench --json | tail -1 >> gpu-bench.jsonl
done
python - <<'PY'
import json

print(f"{'model':28} {'static ips':>10} {'continuous ips':>14} {'ratio':>6} "
      f"{'occupancy s/c':>14} {'rows/step c':>11} {'texts equal':>11}")
for line in open("gpu-bench.jsonl"):
    r = json.loads(line)
    s, c = r["static"], r["continuous"]
    print(f"{r['model']:28} {s['ips']:>10} {c['ips']:>14} {r['continuous_vs_static']:>6} "
          f"{s['occupancy']:>6}/{c['occupancy']:<7} {c['rows_per_step']:>11} "
          f"{str(r['texts_equal']):>11}")
PY
