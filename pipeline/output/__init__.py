"""What a run leaves behind: the output's layout, atomic per-shard commits, the listing
of committed shards, the ledger, the lease, and what `status` and `preview` read."""
