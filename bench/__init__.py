"""Benchmarks of the streamapp worker against a real local broker: `python -m bench.run`.

See docs/performance.md for what each figure means and how it is measured.
"""
