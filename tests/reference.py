"""What `model.generate` gives for one image alone: the parity reference."""

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

    def text(self, image_bytes: bytes, **generate_kwargs) -> str:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        pixels = self.processor(images=image, return_tensors="pt").pixel_values
        with torch.no_grad():
            out = self.model.generate(pixels, **generate_kwargs)
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)[0]
