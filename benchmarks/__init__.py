"""Speed measurements (not tests): each prints its figures and a one-line verdict against its target.

Every CPU figure is a ratio of two things measured side by side in one run,
interleaved (A B A B ...) and summarised by the median, because these machines
are noisy. Run them all with `python -m benchmarks`; see benchmarks/README.md.
"""
