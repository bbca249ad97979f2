"""What a run reads: shards discovered under the input, their readers (WebDataset,
Parquet, image folders) and the passthrough columns that ride along with each row."""
