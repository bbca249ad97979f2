"""Entry points: the `shardscribe` CLI and the modules `ray job submit` runs."""
