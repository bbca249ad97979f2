"""The script a user writes instead of the pipeline, run cold by `shardscribe bench`.

`python -m jobs.cold_bare SPEC` imports torch and transformers, loads the model, then
decodes, preprocesses and generates over the images in batches, as one fresh process.
SPEC is JSON: model (a path), images (a folder of PNG files, read in name order),
batch_size and generate (the `generate` arguments). It prints one JSON object: the
texts, and when (time.time()) the imports, the model load, the first batch and the last
one ended.
"""

import json
import sys
import time
from pathlib import Path


def main(spec: dict) -> dict:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    stamps = {"imported": time.time()}
    model = VisionEncoderDecoderModel.from_pretrained(spec["model"]).eval()
    processor = AutoImageProcessor.from_pretrained(spec["model"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    stamps["loaded"] = time.time()
    paths, texts, size = sorted(Path(spec["images"]).glob("*.png")), [], spec["batch_size"]
    with torch.inference_mode():
        for begin in range(0, len(paths), size):
            images = [Image.open(path).convert("RGB") for path in paths[begin : begin + size]]
            pixels = processor(images=images, return_tensors="pt").pixel_values
            ids = model.generate(pixel_values=pixels, use_cache=True, **spec["generate"])
            texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
            stamps.setdefault("first_batch", time.time())
    return stamps | {"done": time.time(), "texts": texts}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
