"""Experiments: sets of training runs started through the same launchers as `run` (so on Slurm too).

    python -m runner sweep ...               # a grid over spec fields and backend options
    python -m runner tune ...                # Optuna search (an Optuna "study"), every trial a run with its record

The micro-benchmarks (`ensemble`, `per-sample-grads`) are their own feature folder: runner.micro.
"""
