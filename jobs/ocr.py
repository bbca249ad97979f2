"""`python -m jobs.ocr`: `shardscribe run --preset ocr`, for `ray job submit`."""

from jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main(preset="ocr"))
