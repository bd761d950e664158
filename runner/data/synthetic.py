"""A tiny deterministic MNIST look-alike, generated locally, for smoke runs and tests.

    python -m runner run --preset smoke --dataset synthetic
    python -m runner data fetch --dataset synthetic --data-dir /tmp/synthetic

Ten classes, each a fixed sparse stroke pattern drawn with random brightness and noise: a LeNet
learns it in an epoch. The bytes are pinned in the catalog like MNIST's, so the synthetic data goes
through the same verify-before-train path as the real data.
"""

from __future__ import annotations

import numpy as np

from runner.data import idx

SEED = 20261123


def generate(n_train: int = 4096, n_test: int = 1024) -> dict[str, bytes]:
    """IDX payloads keyed by file name, identical on every machine with the same NumPy streams."""
    rng = np.random.default_rng(SEED)
    templates = np.zeros((10, 28, 28), np.float32)
    for c in range(10):
        # A few random line segments per class: enough structure for convolutions to find.
        for _ in range(4):
            r0, c0, r1, c1 = rng.integers(4, 24, size=4)
            t = np.linspace(0, 1, 40)
            templates[c, np.round(r0 + t * (r1 - r0)).astype(int), np.round(c0 + t * (c1 - c0)).astype(int)] = 1.0

    def draw(n):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        gain = rng.uniform(160, 255, size=(n, 1, 1))
        noise = rng.normal(0, 25, size=(n, 28, 28))
        images = np.clip(templates[labels] * gain + noise, 0, 255).round().astype(np.uint8)
        return images, labels

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return {
        "train-images-idx3-ubyte": idx.dump(train_x),
        "train-labels-idx1-ubyte": idx.dump(train_y),
        "t10k-images-idx3-ubyte": idx.dump(test_x),
        "t10k-labels-idx1-ubyte": idx.dump(test_y),
    }
