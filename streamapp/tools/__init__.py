"""Command-line tools: the loader, the demo, broker chores and the schema generator."""
