"""dlbench: one standardized training workload, many frameworks, honest numbers.

    python -m runner --help
    python -m runner run --framework torch --preset smoke

Importing this package imports no deep-learning framework: backends load lazily, inside a
worker process of their own.
"""

__version__ = "0.1.0"
