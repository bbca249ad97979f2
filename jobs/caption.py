"""`python -m jobs.caption`: `shardscribe run --preset caption`, for `ray job submit`."""

from jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main(preset="caption"))
