"""A serving process (`python -m streamapp.serve`): lookups beside a worker, from its
RocksDB databases opened as secondaries. Never imports the worker."""
