"""Benchmarks of the Fruits! chain: ``python -m benchmarks.run`` (or ``make bench N=300``).

Not part of the test suite. See ``docs/benchmarks.md`` for the method and the results.
"""
