"""Validation during training: cross-entropy and greedy (or beam) CER / WER / exact
lines on held-out shards, summed over the Ray Train workers."""

from __future__ import annotations

import ray.train
import torch

from model.metrics import ErrorCounts
from pipeline.training.objective import IGNORE_INDEX, OCRTrainingModule, recognise, trim_labels
from pipeline.training.train_config import TrainConfig


@torch.no_grad()
def evaluate(module: OCRTrainingModule, tokenizer, config: TrainConfig, device) -> dict:
    """Cross-entropy and greedy (or beam) CER / WER on up to `max_rows` validation rows,
    summed over the workers."""
    context = ray.train.get_context()
    shard = ray.train.get_dataset_shard("validation")
    module.eval()
    rows_each = -(-config.evaluation.max_rows // context.get_world_size())
    counts, loss_sum, seen = ErrorCounts(), 0.0, 0
    for batch in shard.iter_torch_batches(batch_size=config.training.batch_size, device=device):
        pixels = batch["pixel_values"][: rows_each - seen]
        labels = trim_labels(batch["labels"][: rows_each - seen])
        _, ce, _ = module(pixels, labels)
        loss_sum += float(ce) * len(labels)
        predictions = recognise(
            module.model,
            tokenizer,
            pixels,
            config.evaluation.max_new_tokens,
            config.evaluation.num_beams,
            module.ctc_head,
        )
        references = tokenizer.batch_decode(
            labels.masked_fill(labels == IGNORE_INDEX, tokenizer.pad_token_id),
            skip_special_tokens=True,
        )
        counts.add(predictions, references)
        seen += len(labels)
        if seen >= rows_each:
            break
    totals = _sum_over_workers(
        [counts.char_edits, counts.chars, counts.word_edits, counts.words, counts.exact, seen],
        device,
    )
    counts = ErrorCounts(*totals[:5], lines=totals[5])
    val_loss = _sum_over_workers([loss_sum], device, dtype=torch.float64)[0]
    return {
        "val_loss": val_loss / max(counts.lines, 1),
        "cer": counts.cer,
        "wer": counts.wer,
        "exact_match": counts.exact_match,
        "val_rows": counts.lines,
    }


def _sum_over_workers(values: list, device, dtype=torch.int64) -> list:
    tensor = torch.tensor(values, dtype=dtype, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return [v.item() for v in tensor]
