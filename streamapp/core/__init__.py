"""The domain, pure: messages, parsing, pair state, counting, features, scores, lookups,
time helpers, partitioning and settings. No faust, mode, aiokafka or aiohttp, and nothing
from the other streamapp packages (import-linter checks both)."""
