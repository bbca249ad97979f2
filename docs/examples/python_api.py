"""A job from Python: validate a config, run it, read the output with pyarrow and Ray Data."""

import pyarrow.dataset as ds
import ray

from pipeline.config_loading import validate_config
from pipeline.run.runner import run_job

config = validate_config(
    {
        "input": {"uri": "shardscribe-demo/input"},  # written by `shardscribe demo`
        "output": {"uri": "shardscribe-demo/from-python"},
        "generation": {"num_beams": 2},
    }
)
summary = run_job(config)  # max_shards=2 for a trial; Ctrl-C stops it cleanly
print(summary.line())  # 3 shards committed, 0 already done, 0 failed; 24 rows, 0 row errors ...

# Both readers skip files and folders whose names start with "_" (the ledger).
table = ds.dataset("shardscribe-demo/from-python", format="parquet").to_table()
print(table.select(["key", "text", "error"]).slice(0, 3).to_pylist())

texts = ray.data.read_parquet("shardscribe-demo/from-python").select_columns(["key", "text"])
print(texts.take(3))
