"""`python -m jobs.train`: `shardscribe train`, for `ray job submit`."""

import sys

from jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
