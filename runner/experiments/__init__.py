"""Experiments: sets of run requests started through the same launchers as `run` (so on Slurm too).

    python -m runner sweep ...               # a grid over spec fields and backend options
    python -m runner tune ...                # Optuna search, every trial a run with its record
    python -m runner ensemble ...            # N models stepped together (runner.studies)
    python -m runner per-sample-grads ...    # per-example gradients (runner.studies)
"""
