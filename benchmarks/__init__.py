"""Side-by-side speed benchmarks (``make bench``): each prints a ratio measured in one run.

Run one with ``python -m benchmarks.<name>``, all with ``python -m benchmarks``. Results and the targets
they are held to: ``experiments/bench/README.md``.
"""
