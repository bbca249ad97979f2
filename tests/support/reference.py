"""What `model.generate` gives for one image alone: the parity reference. Scores are
recomputed here the plain way: one image, one full decoder forward pass, no cache."""

from __future__ import annotations

import io

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel


class Reference:
    def __init__(self, model_path: str):
        self.model = VisionEncoderDecoderModel.from_pretrained(model_path).eval()
        self.processor = AutoImageProcessor.from_pretrained(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)

    def pixels(self, image_bytes: bytes) -> torch.Tensor:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        return self.processor(images=image, return_tensors="pt").pixel_values

    def text(self, image_bytes: bytes, **generate_kwargs) -> str:
        with torch.no_grad():
            out = self.model.generate(self.pixels(image_bytes), **generate_kwargs)
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)[0]

    def token_logprobs(self, image_bytes: bytes, text: str, max_tokens: int) -> list[float]:
        """Log-probability of each of the text's tokens, then of end-of-sequence unless
        the text already used all `max_tokens`, given the image."""
        eos = self.model.generation_config.eos_token_id
        ids = self.tokenizer(text, add_special_tokens=False).input_ids[:max_tokens]
        if len(ids) < max_tokens:
            ids.append(eos)
        start = self.model.generation_config.decoder_start_token_id
        with torch.no_grad():
            logits = self.model(
                pixel_values=self.pixels(image_bytes),
                decoder_input_ids=torch.tensor([[start, *ids[:-1]]]),
            ).logits[0]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        return [logprobs[i, token].item() for i, token in enumerate(ids)]

    def mean_logprob(self, image_bytes: bytes, text: str, max_tokens: int) -> float:
        logprobs = self.token_logprobs(image_bytes, text, max_tokens)
        return sum(logprobs) / len(logprobs)

    def choice_probs(self, image_bytes: bytes, labels: list[str]) -> list[float]:
        """Each label's probability among `labels`: softmax of their log-likelihoods."""
        totals = [sum(self.token_logprobs(image_bytes, label, 10**6)) for label in labels]
        return torch.softmax(torch.tensor(totals), dim=0).tolist()
