"""How sure the model is of a text: mean per-token log-probabilities."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def eos_token_ids(model: PreTrainedModel) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def mean_token_logprobs(model: PreTrainedModel, output) -> torch.Tensor:
    """One score per returned sequence of `generate(..., output_scores=True,
    return_dict_in_generate=True)`: the mean log-probability of its generated tokens, up to
    and including the first end-of-sequence token. Padding after it does not count."""
    beam_indices = getattr(output, "beam_indices", None)
    # Greedy and sampling keep raw logits per step; beam search keeps log-softmaxed scores.
    transition = model.compute_transition_scores(
        output.sequences, output.scores, beam_indices, normalize_logits=beam_indices is None
    ).float()
    generated = output.sequences[:, output.sequences.shape[1] - transition.shape[1] :]
    is_eos = torch.isin(generated, torch.tensor(eos_token_ids(model), device=generated.device))
    # A token counts if no end-of-sequence came before it.
    counts = (is_eos.cumsum(dim=1) - is_eos.long()) == 0
    if beam_indices is not None:
        counts &= beam_indices[:, : transition.shape[1]] >= 0
    total = torch.where(counts, transition, 0.0).sum(dim=1)
    return total / counts.sum(dim=1).clamp(min=1)
