"""Loader mode: each batch built by a data loader from the raw uint8 images, instead of indexed from
the normalized training set resident on the device (the default, and the fast honest one).

    python -m runner run --framework torch --option torch.loader=dataloader --option torch.workers=4
    python -m runner run --framework tensorflow --option tensorflow.loader=tfdata --option tensorflow.loop=step
    python -m runner run --framework jax --option jax.loader=host --option jax.workers=2
    python benchmarks/loader_overhead.py

How people often train: a torch DataLoader over a Dataset of raw images with a per-sample transform
and worker processes, a tf.data pipeline, a host-side loader for JAX (Grain). Each loader here yields
exactly the rows of the harness' batch order, and its per-sample transform is the resident path's
arithmetic (uint8 -> float32 x/255 -> (x - mean)/std, float32 throughout), so the batches are
bitwise the same and the parity gate, which trains through train_epoch, still holds.

What is timed (EpochStats.data_s, the record's timing.epoch_data_s): the host's wall time waiting for
each next batch, summed over the epoch, from starting the epoch's iterator (a DataLoader resets its
workers and fills their queues there) to the batch's arrival, including *issuing* its copy to the
device (torch .to(non_blocking), tf.identity on the GPU, jax.device_put), not the copy's completion:
no device sync is added, so compute queued on a GPU overlaps the wait. It is part of the epoch's
training time, not on top of it. The resident path reads no clock per step.

Framework imports stay inside functions: `python -m runner --help` imports this module's callers.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from runner.data.store import normalize

WORKERS = ("0", "1", "2", "4", "8", "16")  # the seed studies' sweep went 2..16; 0 = in the training thread
PREFETCH_PER_WORKER = 2  # batches in flight per worker: torch's DataLoader default, used by all three


def check(name: str, options: dict, loader_key: str, conflicts: dict) -> None:
    """Refuse option combinations that cannot run as asked (ValueError: one line, exit 2 at the CLI).
    conflicts: {(key, value): (loader value, why)} pairs that cannot go together."""
    loader, workers = options.get("loader", "resident"), options.get("workers", "0")
    if loader == "resident" and workers != "0":
        raise ValueError(f"{name}.workers={workers} needs {name}.loader={loader_key}: resident data has no workers")
    for (key, value), (with_loader, why) in conflicts.items():
        if options.get(key) == value and loader == with_loader:
            raise ValueError(f"{name}.loader={loader} cannot run with {name}.{key}={value}: {why}")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_noted: set = set()  # once per process: the gate's fresh backend after training would say it again


def note_workers(name: str, workers: int) -> None:
    """More workers than cores is allowed (the sweep goes to 16), but the reader should know."""
    cores = usable_cores()
    if workers > cores and (name, workers) not in _noted:
        _noted.add((name, workers))
        print(f"dlbench: note: {name}.workers={workers} > {cores} usable cores here: the workers share them",
              file=sys.stderr)


def raw_pixels(images: np.ndarray, mean: float, std: float, chunk: int = 8192) -> np.ndarray:
    """The uint8 images whose normalization is `images`, exactly. Every backend is handed the
    normalized float32 set (one contract for the gate and every mode); the 256 pixel levels lie
    1/(255 std) apart after normalizing (0.013 for MNIST), so rounding the inverse recovers each byte,
    and the check below proves it bit for bit (in chunks: no full-size temporary in the peak memory)."""
    out = np.empty(images.shape, np.uint8)
    m, s = np.float32(mean), np.float32(std)
    for lo in range(0, len(images), chunk):
        x = images[lo:lo + chunk]
        u = np.clip(np.rint((x * s + m) * np.float32(255)), 0, 255).astype(np.uint8)
        if not np.array_equal(normalize(u, mean, std), x):
            raise ValueError("loader mode needs images normalized from uint8 pixels with the spec's"
                             f" mean {mean} and std {std}; these are not")
        out[lo:lo + chunk] = u
    return out


class Timed:
    """One epoch's batches from `source()` (an iterable made when the epoch starts), with data_s: the
    seconds spent waiting for them (module docstring)."""

    def __init__(self, source, clock=time.perf_counter):
        self.source, self.clock, self.data_s = source, clock, 0.0

    def __iter__(self):
        t0 = self.clock()
        it = iter(self.source())
        while True:
            try:
                batch = next(it)
            except StopIteration:
                self.data_s += self.clock() - t0
                return
            self.data_s += self.clock() - t0
            yield batch
            t0 = self.clock()


# ---- torch: a real DataLoader -------------------------------------------------------------------

class RawImages:
    """A map-style torch Dataset of raw uint8 images; __getitem__ makes one sample the way
    torchvision's ToTensor + Normalize do (x.float().div(255), then .sub(mean).div(std)): the
    resident path's float32 arithmetic, bit for bit (tests/test_loader.py checks all 256 levels).
    A module-level class, so spawn-started workers (macOS) can unpickle it."""

    def __init__(self, images, labels, mean: float, std: float):
        self.images, self.labels = images, labels  # torch uint8 (N, 28, 28), int64 (N,)
        # The float32 values as Python floats: torch then subtracts and divides by exactly those.
        self.mean, self.std = float(np.float32(mean)), float(np.float32(std))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        import torch

        x = self.images[i].to(torch.float32).div(255).sub(self.mean).div(self.std)
        return x[None], self.labels[i]  # (1, 28, 28): NCHW once collated


class OrderRows:
    """The DataLoader's batch_sampler: the current epoch's order, row by row (set before each epoch;
    it is read in the main process, so persistent workers see each epoch's new order)."""

    def __init__(self):
        self.order = np.zeros((0, 0), np.int64)

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return len(self.order)


class TorchLoader:
    """torch.utils.data.DataLoader over RawImages: num_workers worker processes, pin_memory on CUDA,
    each batch moved to the device with non_blocking copies. persistent_workers where workers > 0:
    the workers start once (forked at the first epoch, so the first epoch pays their start, like
    compilation) and serve every epoch, as long-running training scripts set it; re-forking them each
    epoch would time process start-up in every steady epoch, which measures the OS, not the loader."""

    def __init__(self, torch, images: np.ndarray, labels: np.ndarray, mean: float, std: float,
                 workers: int, device):
        import warnings

        # torch's multi-line "will create N worker processes ... might freeze" warning: note_workers has
        # said it in one line, and a sweep to 16 workers on a small machine means it.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        self.torch, self.device, self.rows = torch, device, OrderRows()
        data = RawImages(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), mean, std)
        self.loader = torch.utils.data.DataLoader(
            data, batch_sampler=self.rows, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=PREFETCH_PER_WORKER if workers else None)

    def epoch(self, order: np.ndarray) -> Timed:
        self.rows.order = order
        dev = self.device

        def batches():
            for x, y in self.loader:
                yield x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        return Timed(batches)


# ---- tensorflow: tf.data ------------------------------------------------------------------------

class TfData:
    """A tf.data pipeline on the host CPU: a range over the epoch's sample positions, map(per-sample
    normalize, num_parallel_calls=workers, deterministic) reading the index from the epoch's order,
    batch, prefetch(2 per worker). workers=0: no parallel map and no prefetch, the map runs when the
    training loop asks. An explicit count, not AUTOTUNE: the record must say how many threads fed it.
    The order sits in a tf.Variable the map reads, so one traced pipeline serves every epoch (one per
    epoch length: the gate trains one-row epochs)."""

    def __init__(self, tf, images: np.ndarray, labels: np.ndarray, mean: float, std: float,
                 workers: int, device: str):
        self.tf, self.workers, self.device, self.pipes = tf, workers, device, {}
        self.mean, self.std = float(np.float32(mean)), float(np.float32(std))  # exact float32 constants
        with tf.device("/CPU:0"):
            self.images, self.labels = tf.constant(images), tf.constant(labels.astype(np.int32))

    def _pipe(self, n: int, batch: int):
        tf = self.tf
        if (n, batch) not in self.pipes:
            with tf.device("/CPU:0"):
                order = tf.Variable(tf.zeros(n, tf.int32), trainable=False)

            def sample(k):
                i = order[k]
                x = (tf.cast(tf.gather(self.images, i), tf.float32) / 255.0 - self.mean) / self.std
                return x[..., None], tf.gather(self.labels, i)  # (28, 28, 1): NHWC once batched

            parallel = {"num_parallel_calls": self.workers, "deterministic": True} if self.workers else {}
            ds = tf.data.Dataset.range(n).map(sample, **parallel).batch(batch)
            if self.workers:
                ds = ds.prefetch(PREFETCH_PER_WORKER * self.workers)
            self.pipes[(n, batch)] = order, ds
        return self.pipes[(n, batch)]

    def epoch(self, order: np.ndarray) -> Timed:
        tf = self.tf
        variable, ds = self._pipe(order.size, order.shape[1])
        variable.assign(order.reshape(-1).astype(np.int32))
        on_gpu = not self.device.upper().startswith("/CPU")

        def batches():
            for x, y in ds:
                if on_gpu:  # the host batch onto the device, as torch's .to(device)
                    with tf.device(self.device):
                        x, y = tf.identity(x), tf.identity(y)
                yield x, y
        return Timed(batches)


# ---- jax: Grain on the host ---------------------------------------------------------------------

class EpochSamples:
    """Grain's random-access source for one epoch: element k = (raw image, label) of order.flat[k]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, order: np.ndarray):
        self.images, self.labels, self.flat = images, labels, order.reshape(-1)

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, k):
        i = self.flat[k]
        return self.images[i], self.labels[i]


class GrainHost:
    """Grain (the JAX ecosystem's data loader) on the host: MapDataset over the epoch's samples,
    map(the resident path's own NumPy normalize, per sample), batch, then an iterator whose
    ReadOptions build the batches in `workers` threads (each a whole batch, sample by sample, as a
    torch worker does), 2 batches per worker prefetched (workers=0: in the training thread, nothing
    ahead). Threads, as tf.data's, not processes: a sample is 784 bytes, and how little NumPy's
    release of the GIL buys at that size is part of what the sweep measures.
    Each batch goes to the device with `put` (jax.device_put, or the mesh's batch sharding)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float, workers: int, put):
        import grain

        self.grain, self.images, self.labels = grain, images, labels.astype(np.int32)
        self.mean, self.std, self.workers, self.put = mean, std, workers, put

    def _normalize(self, sample):
        x, y = sample
        return normalize(x, self.mean, self.std)[..., None], y  # (28, 28, 1): NHWC once batched

    def epoch(self, order: np.ndarray) -> Timed:
        grain, w, batch = self.grain, self.workers, order.shape[1]
        options = grain.ReadOptions(num_threads=w, prefetch_buffer_size=PREFETCH_PER_WORKER * w)  # in batches

        def batches():
            ds = grain.MapDataset.source(EpochSamples(self.images, self.labels, order)).map(self._normalize)
            for x, y in ds.batch(batch, drop_remainder=True).to_iter_dataset(options):
                yield self.put(x), self.put(y)
        return Timed(batches)
