"""Text frames: a line model's encoder reads only the frames that hold the line.

A line model (a ViT whose patches are whole columns of its input, as the bundled model's
32x4) sees each line scaled to its input height and padded to its input width: 1,024 px,
256 frames, where printed lines average under 400 px. A model trained with text frames
(its config's `text_frames` says so) is given only the frames between the line's first
and last column that is not padding, widened to a multiple of `frame_step` frames, each
with the position embedding it has in the full input. Rows of one span length are
encoded together, so no row ever attends to another row's frames or to padding; the
decoder's cross-attention masks the frames a shorter row lacks. A line's frames, and so
its text, depend on its own pixels alone, never on the batch it lands in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

CONFIG_KEY = "text_frames"
FRAME_STEP = 8  # spans are rounded up to this many frames: few distinct lengths a batch


@dataclass(frozen=True)
class EncodedLines:
    """What the decoder attends to: the class state first, then each row's frames."""

    states: torch.Tensor  # (N, 1 + T, D), the encoder's width
    mask: torch.Tensor  # (N, 1 + T) long: 1 where a row has a state


def column_patches(model) -> bool:
    """Whether the encoder is a ViT whose patches each span the input's full height."""
    config = model.config.encoder
    if config.model_type != "vit":
        return False
    height = _pair(config.image_size)[0]
    return _pair(config.patch_size)[0] == height


def uses_text_frames(model) -> bool:
    return bool(getattr(model.config, CONFIG_KEY, None))


def enable_text_frames(model, pad_value: list[float]) -> None:
    """Mark a column-patch model as one that reads text frames; `pad_value` is the value
    each channel of the image processor's padding takes."""
    if not column_patches(model):
        raise ValueError("text frames need a ViT encoder whose patches are whole columns")
    setattr(model.config, CONFIG_KEY, {"frame_step": FRAME_STEP, "pad_value": pad_value})


def processor_pad_value(image_processor) -> list[float]:
    """The pixel value of a processor's padding (byte 0, rescaled and normalised)."""
    rescale = image_processor.rescale_factor if image_processor.do_rescale else 1.0
    if not getattr(image_processor, "do_normalize", False):
        return [0.0, 0.0, 0.0]
    mean, std = image_processor.image_mean, image_processor.image_std
    return [float((0 * rescale - m) / s) for m, s in zip(mean, std, strict=True)]


def frame_spans(model, pixel_values: torch.Tensor) -> list[tuple[int, int]]:
    """Each row's kept frames [start, stop): its inked columns, widened on both sides to a
    multiple of the frame step (a blank row keeps one step at the centre)."""
    settings = getattr(model.config, CONFIG_KEY)
    patch_width = _pair(model.config.encoder.patch_size)[1]
    frames = pixel_values.shape[-1] // patch_width
    step = min(settings["frame_step"], frames)
    pad = torch.tensor(settings["pad_value"], dtype=pixel_values.dtype)
    padding = (pixel_values == pad.to(pixel_values.device)[None, :, None, None]).all(dim=(1, 2))
    inked = ~padding.reshape(len(pixel_values), frames, patch_width).all(dim=2)
    spans = []
    for row in inked.cpu():
        where = torch.nonzero(row).flatten()
        first, last = (int(where[0]), int(where[-1]) + 1) if len(where) else (frames // 2,) * 2
        length = min(frames, max(step, -(-(last - first) // step) * step))
        start = min(max(0, first - (length - (last - first)) // 2), frames - length)
        spans.append((start, start + length))
    return spans


def encode_lines(model, pixel_values: torch.Tensor) -> EncodedLines:
    """The encoder's states over each row's text frames, padded to the batch's longest
    span (masked)."""
    encoder = model.encoder
    embeddings = encoder.embeddings
    patch_width = _pair(model.config.encoder.patch_size)[1]
    spans = frame_spans(model, pixel_values)
    by_length: dict[int, list[int]] = defaultdict(list)
    for row, (start, stop) in enumerate(spans):
        by_length[stop - start].append(row)
    longest = max(by_length)
    width = model.config.encoder.hidden_size
    states = pixel_values.new_zeros(len(pixel_values), 1 + longest, width)
    mask = torch.zeros(len(pixel_values), 1 + longest, dtype=torch.long, device=states.device)
    positions = embeddings.position_embeddings[0]
    for length, rows in by_length.items():
        starts = [spans[row][0] for row in rows]
        columns = torch.stack(
            [
                pixel_values[row, :, :, start * patch_width : (start + length) * patch_width]
                for row, start in zip(rows, starts, strict=True)
            ]
        )
        patches = embeddings.patch_embeddings.projection(columns).flatten(2).transpose(1, 2)
        patches = patches + torch.stack([positions[1 + s : 1 + s + length] for s in starts])
        cls = (embeddings.cls_token + positions[:1]).expand(len(rows), -1, -1)
        tokens = embeddings.dropout(torch.cat([cls, patches], dim=1))
        with _embeddings_given(encoder, tokens):
            hidden = encoder(pixel_values=columns, interpolate_pos_encoding=True)
        index = torch.tensor(rows, device=states.device)
        states[index, : 1 + length] = hidden.last_hidden_state
        mask[index, : 1 + length] = 1
    return EncodedLines(states, mask)


def span_groups(encoded: EncodedLines) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(rows, their states) for each span length: rows that need no mask together."""
    lengths = encoded.mask.sum(dim=1)
    for length in lengths.unique().tolist():
        index = torch.nonzero(lengths == length).flatten()
        yield index.tolist(), encoded.states[index, :length]


def decoder_logits(model, input_ids: torch.Tensor, encoded: EncodedLines) -> torch.Tensor:
    """The decoder's logits at every position of `input_ids` (teacher-forced)."""
    longest = int(encoded.mask.sum(dim=1).max())
    encoded = EncodedLines(encoded.states[:, :longest], encoded.mask[:, :longest])
    output = model.decoder(
        input_ids=input_ids,
        encoder_hidden_states=decoder_states(model, encoded.states),
        encoder_attention_mask=encoded.mask,
        use_cache=False,
    )
    return output.logits


class _GivenEmbeddings(nn.Module):
    """Stands in for a ViT's embedding module for one call and returns the embeddings it
    was given: ViTModel takes only pixels, and this hands its layers the kept frames with
    their own positions, through whatever layer API the installed transformers has."""

    def __init__(self, original: nn.Module, tokens: torch.Tensor):
        super().__init__()
        self.patch_embeddings = original.patch_embeddings  # ViTModel reads its dtype
        self.tokens = tokens

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.tokens


@contextmanager
def _embeddings_given(encoder: nn.Module, tokens: torch.Tensor):
    original = encoder.embeddings
    encoder.embeddings = _GivenEmbeddings(original, tokens)
    try:
        yield
    finally:
        encoder.embeddings = original


def decoder_states(model, states: torch.Tensor) -> torch.Tensor:
    """As `VisionEncoderDecoderModel` does: projected when the widths differ and the
    decoder does not project itself."""
    encoder, decoder = model.config.encoder, model.config.decoder
    if (
        encoder.hidden_size != decoder.hidden_size
        and getattr(decoder, "cross_attention_hidden_size", None) is None
    ):
        return model.enc_to_dec_proj(states)
    return states


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
