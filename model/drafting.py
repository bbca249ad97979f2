"""Greedy reading of a text-frame model in a few decoder passes instead of one a token.

The CTC head a model trains with (`pipeline.training.objective`) reads every line from
its encoder frames alone, for free: its greedy reading is a draft. One teacher-forced
decoder pass over the start token and the draft gives the decoder's own greedy choice
at every position; the longest prefix where the two agree is exactly what step-by-step
greedy decoding would have produced, and the decoder's choice at the first disagreement
is its next token. A row whose draft was right ends in one pass; a row with a wrong
draft goes on from what was verified, with each way its draft's remainder may line up
checked side by side; the one that agrees longest carries on. Verified tokens stay in
the decoder's cache, so a later pass feeds only a row's new tokens. So each line's text
is greedy `generate`'s on the same frames, in as many passes as its draft has mistakes,
plus one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from model.line_frames import EncodedLines, decoder_states
from model.positions import RowPositions
from model.scores import eos_token_ids

CTC_HEAD_FILE = "ctc_head.safetensors"
# Lines checked together, of like length. Fewer, larger decoder calls: at 64 page lines
# read 2.6 times faster in `run` than at 16 (0.319 against 0.123 pages/s per core), single
# lines as fast (51.0 against 52.8 lines/s per core).
CHUNK = 64
# Draft tokens a pass feeds a line: a mistake early in a long draft voids the rest of
# what was fed, so feeding it all costs more than the passes a window adds.
WINDOW = 8


@dataclass(frozen=True)
class GreedyReading:
    sequences: torch.Tensor  # (N, 1 + L): the start token, the text's tokens, then padding
    passes: int  # decoder passes (one a generated token when there is no draft)
    decoder_rows: int  # rows over all passes
    drafted_rows: int  # rows whose draft was right as it was


def load_ctc_head(directory: str | Path, model) -> nn.Linear | None:
    """The CTC head saved beside a model's weights, or None where there is none."""
    path = Path(directory) / CTC_HEAD_FILE
    if not path.is_file():
        return None
    tensors = load_file(str(path))
    head = nn.Linear(tensors["weight"].shape[1], tensors["weight"].shape[0])
    head.load_state_dict(tensors)
    return head.to(model.device, model.dtype).eval()


def save_ctc_head(head: nn.Linear, directory: str | Path) -> None:
    tensors = {name: t.detach().cpu().contiguous() for name, t in head.state_dict().items()}
    save_file(tensors, str(Path(directory) / CTC_HEAD_FILE))


def ctc_log_probs(head: nn.Linear, states: torch.Tensor) -> torch.Tensor:
    """(N, T, V) float32 log-probabilities of the head over encoder states."""
    return head(states).float().log_softmax(-1)


def ctc_drafts(head: nn.Linear, encoded: EncodedLines, blank: int) -> list[list[int]]:
    """Each row's greedy CTC reading: the best token of every frame, repeats merged,
    blanks dropped."""
    best = ctc_log_probs(head, encoded.states).argmax(-1)
    previous = torch.cat([torch.full_like(best[:, :1], -1), best[:, :-1]], dim=1)
    keep = (best != previous) & (best != blank) & encoded.mask.bool()
    return [row[kept].tolist() for row, kept in zip(best, keep, strict=True)]


@torch.inference_mode()
def checked_drafts(
    model, encoded: EncodedLines, drafts: list[list[int]], max_new: int
) -> GreedyReading:
    """Greedy decoding of each row, given a draft of its tokens (end token left out).
    Rows go in chunks of like frame count and draft length."""
    frames = encoded.mask.sum(dim=1).tolist()
    order = sorted(range(len(drafts)), key=lambda row: (frames[row], len(drafts[row])))
    checker = _Checker(model, encoded, max_new)
    for begin in range(0, len(order), CHUNK):
        checker.check(order[begin : begin + CHUNK], drafts)
    pad = model.generation_config.pad_token_id
    known = checker.known
    sequences = torch.full((len(drafts), 1 + max(map(len, known.values()), default=0)), pad)
    sequences[:, 0] = model.generation_config.decoder_start_token_id
    for row, tokens in known.items():
        sequences[row, 1 : 1 + len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return GreedyReading(sequences, checker.passes, checker.computed, checker.drafted)


@dataclass
class _Hypothesis:
    line: int
    feed: list[int]  # the tokens this pass feeds: the last verified one, then the draft's
    rest: list[int]  # the draft's tokens after those
    position: int  # the first fed token's position in the line's text


@dataclass
class _Checker:
    model: object
    encoded: EncodedLines
    max_new: int
    known: dict[int, list[int]] = field(default_factory=dict)  # verified tokens by line
    passes: int = 0
    computed: int = 0  # decoder rows over all passes
    drafted: int = 0

    def __post_init__(self):
        config = self.model.generation_config
        self.start, self.pad = config.decoder_start_token_id, config.pad_token_id
        self.eos = set(eos_token_ids(self.model))
        self.positions = RowPositions(self.model.decoder)
        self.last_position = self.model.decoder.config.max_position_embeddings - 1
        self.states = decoder_states(self.model, self.encoded.states)

    def check(self, lines: list[int], drafts: list[list[int]]) -> None:
        hypotheses = [_next(line, self.start, drafts[line][: self.max_new], 0) for line in lines]
        wrong_drafts: set[int] = set()
        for line in lines:
            self.known[line] = []
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        slots = torch.zeros((len(lines), 0), dtype=torch.long, device=self.states.device)
        # The chunk's frames: the cross-attention cache keeps the first pass's width.
        frames = int(self.encoded.mask[lines].sum(dim=1).max())
        while hypotheses:
            fresh, choices = self._pass(hypotheses, cache, slots, frames)
            best: dict[int, tuple[int, int]] = {}  # line -> (hypothesis, tokens agreed)
            for i, (hypothesis, choice) in enumerate(zip(hypotheses, choices, strict=True)):
                agreed = 0
                while (
                    agreed + 1 < len(hypothesis.feed)
                    and choice[agreed] == hypothesis.feed[agreed + 1]
                ):
                    agreed += 1
                if hypothesis.line not in best or agreed > best[hypothesis.line][1]:
                    best[hypothesis.line] = (i, agreed)
            following, parents = [], []
            for line, (i, agreed) in best.items():
                hypothesis, token = hypotheses[i], choices[i][agreed]
                known = self.known[line]
                known += hypothesis.feed[1 : 1 + agreed]
                candidate = hypothesis.feed[1:] + hypothesis.rest
                if len(known) < self.max_new:
                    known.append(token)
                    drafted = candidate[agreed] if agreed < len(candidate) else None
                    if token != drafted and not (drafted is None and token in self.eos):
                        wrong_drafts.add(line)
                if len(known) >= self.max_new or token in self.eos:
                    self.drafted += line not in wrong_drafts
                    continue
                fresh[i, agreed + 1 :] = 0  # what this pass fed past the agreement is void
                budget = self.max_new - len(known)
                position = hypothesis.position + agreed + 1
                for tail in _remainders(candidate, agreed, token):
                    following.append(_next(line, token, tail[:budget], position))
                    parents.append(i)
            if following:
                index = torch.tensor(parents, device=slots.device)
                cache.batch_select_indices(index)
                slots = torch.cat([slots, fresh], dim=1)[index]
            hypotheses = following

    def _pass(self, hypotheses: list[_Hypothesis], cache, slots: torch.Tensor, frames: int):
        """One decoder call over every hypothesis's fed tokens, after what the cache holds;
        (the fed tokens' attention mask, the decoder's choice after each fed token)."""
        device = slots.device
        width = max(len(h.feed) for h in hypotheses)
        ids = torch.full((len(hypotheses), width), self.pad, dtype=torch.long)
        fresh = torch.zeros((len(hypotheses), width), dtype=torch.long)
        positions = torch.zeros((len(hypotheses), width), dtype=torch.long)
        for i, hypothesis in enumerate(hypotheses):
            ids[i, : len(hypothesis.feed)] = torch.tensor(hypothesis.feed, dtype=torch.long)
            fresh[i, : len(hypothesis.feed)] = 1
            positions[i] = torch.arange(hypothesis.position, hypothesis.position + width)
        owners = torch.tensor([h.line for h in hypotheses], device=device)
        fresh = fresh.to(device)
        with self.positions.at(positions.clamp(max=self.last_position).to(device)) as kwargs:
            logits = self.model.decoder(
                input_ids=ids.to(device),
                attention_mask=torch.cat([slots, fresh], dim=1),
                encoder_hidden_states=self.states[owners, :frames],
                encoder_attention_mask=self.encoded.mask[owners, :frames],
                cache=cache,
                use_cache=True,
                **kwargs,
            ).logits
        self.passes += 1
        self.computed += len(hypotheses)
        return fresh, logits.argmax(-1).tolist()


def _next(line: int, verified: int, draft: list[int], position: int) -> _Hypothesis:
    """A pass that feeds the last verified token and the next WINDOW tokens of a draft."""
    return _Hypothesis(line, [verified, *draft[:WINDOW]], draft[WINDOW:], position)


def _remainders(candidate: list[int], at: int, token: int) -> list[list[int]]:
    """How the draft's remainder may line up after the decoder chose `token` where the
    draft had `candidate[at]`: on, where they agree; else the draft read another token in
    its place (go on after it), missed `token` (a merged double letter, a narrow mark:
    keep it), or read a token too many (skip it, when `token` follows)."""
    if at >= len(candidate):
        return [[]]
    if candidate[at] == token:
        return [candidate[at + 1 :]]
    ways = [candidate[at + 1 :], candidate[at:]]
    if at + 1 < len(candidate) and candidate[at + 1] == token:
        ways.append(candidate[at + 2 :])
    return ways
