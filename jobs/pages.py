"""`python -m jobs.pages`: `shardscribe run --preset pages` (pages and PDFs read line by
line), for `ray job submit`."""

from jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main(preset="pages"))
