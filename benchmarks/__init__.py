"""Benchmarks of orca-db against Django's stock PostgreSQL backend.

Run them with ``python -m benchmarks.run [--quick]`` from the repository root
(see docs/performance.md). They are not part of the test suite.
"""
