"""One run: the Ray Data plan and its stages, rows assembled into shards on the driver,
retries, progress, and the runner that drives them."""
