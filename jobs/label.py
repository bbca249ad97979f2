"""`python -m jobs.label`: `shardscribe run --preset label`, for `ray job submit`."""

from jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main(preset="label"))
