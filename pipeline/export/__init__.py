"""`shardscribe export`: a committed page output as searchable PDFs, hOCR or ALTO."""
