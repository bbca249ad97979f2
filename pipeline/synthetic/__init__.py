"""Synthetic text lines: what they say (texts), the fonts and Pillow drawing they are
printed with, scan-like degradation, and WebDataset line shards of them, for the demo,
`shardscribe synth`, training and the bench."""
