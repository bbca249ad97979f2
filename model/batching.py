"""How many images one `generate` call takes when the batch size is `auto`."""

from __future__ import annotations

from collections.abc import Callable

import torch

# On CPU, batches beyond a few images only add cache pressure: on 2 cores the small
# model ran 4.4, 4.7, 4.7, 4.0 images/s at batch 1, 4, 8, 16 (shardscribe bench).
CPU_BATCH_SIZE = 8
MAX_BATCH_SIZE = 256
MEMORY_HEADROOM = 0.7  # of the free accelerator memory; the rest for fragmentation


def batch_size_for(free_bytes: int, per_image_bytes: int) -> int:
    """The largest batch whose images fit in the headroom of the free memory."""
    fits = int(free_bytes * MEMORY_HEADROOM) // max(per_image_bytes, 1)
    return max(1, min(MAX_BATCH_SIZE, fits))


def auto_batch_size(device: torch.device, generate_one: Callable[[], object]) -> int:
    """CPU: a fixed size. CUDA: run `generate_one` (one image, the job's generation
    settings) and size the batch from its peak memory and the memory still free."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    generate_one()
    torch.cuda.synchronize(device)
    per_image = torch.cuda.max_memory_allocated(device) - before
    free, _ = torch.cuda.mem_get_info(device)
    return batch_size_for(free, per_image)
