"""Datasets: verified IDX bytes from the cache, a user folder, the public mirrors or offline sources.

    python -m runner data fetch --dataset mnist
    python -m runner data verify --data-dir ~/datasets/mnist
"""
