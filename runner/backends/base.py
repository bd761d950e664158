"""The small contract every framework backend meets, and what it hands back to the harness.

The harness owns the clock, the batch order, the data and the record; a backend owns only "how does
my framework do this": build the model from the reference weights, hold the data on its device,
train one epoch over given batches, evaluate, and synchronize its device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from runner.workload.spec import Spec

# Spec fields a backend must honour itself; the harness and the reference initializer consume the
# rest (epochs, seed, init, limits, dataset, normalization, target). A test proves every backend
# reads all of these.
BACKEND_FIELDS = ("model", "batch_size", "optimizer", "learning_rate", "beta1", "beta2", "eps",
                  "weight_decay", "loss", "eval_batch_size")


def parse_options(name: str, known: dict[str, tuple], given: dict[str, str]) -> dict:
    """Backend options ({key: (default, choices)}) with the user's strings applied; the result goes
    into the record, so every row says how its framework was driven."""
    unknown = set(given) - set(known)
    if unknown:
        offered = ", ".join(f"{k}={'|'.join(c)}" for k, (_, c) in known.items()) or "none"
        raise ValueError(f"{name} has no option {', '.join(sorted(unknown))} (options: {offered})")
    out = {k: default for k, (default, _) in known.items()}
    for k, v in given.items():
        if v not in known[k][1]:
            raise ValueError(f"{name} option {k}={v!r}: choose from {', '.join(known[k][1])}")
        out[k] = v
    return out


CPU_PEAK_MEMORY = (None, "on the CPU the device memory is host memory: see resources.host.peak_rss_bytes")


def single_parallel(batch: int) -> dict:
    """The record's `parallel` block of a run on one device in one process."""
    return {"world_size": 1, "processes": 1, "devices": 1, "strategy": "none", "comm_backend": None,
            "global_batch": batch, "per_rank_batch": batch, "timing": "one process"}


class FrameworkUnavailable(Exception):
    """The framework (or the requested device) cannot run here; the message says why."""


@dataclass
class EpochStats:
    """Sums over one epoch, possibly still device values: the harness reads them after syncing."""

    loss_sum: Any       # sum of per-step mean losses
    correct: Any        # training samples classified correctly (in train mode, before each step)
    steps: int
    # Loader mode only (a DataLoader / tf.data / host loader feeding the steps): seconds this epoch
    # waited for its batches, part of its training time; None where the data sits on the device.
    data_s: float | None = None


class Backend(Protocol):
    name: str

    OPTIONS: dict  # {key: (default, choices)}: how the framework may be driven (parse_options)
    # Optionally also a staticmethod check_options(options) raising ValueError for a combination that
    # cannot run (e.g. tensorflow.loader=tfdata with loop=epoch): runner.backends.options_for calls it.

    def __init__(self, spec: Spec, device: str, options: dict | None = None) -> None:
        """Import the framework and pick the device ('auto', 'cpu', 'cuda', 'mps').
        Raise FrameworkUnavailable if either is impossible here."""

    def info(self) -> dict:
        """{'framework': {'name', 'version', ...}, 'device': {'kind', 'name'}}"""

    def setup(self, params: dict[str, np.ndarray], train_x: np.ndarray, train_y: np.ndarray,
              test_x: np.ndarray, test_y: np.ndarray) -> None:
        """Build the model from canonical-layout `params`, the optimizer, and put the normalized
        float32 (N, 28, 28) images and int64 labels on the device, once."""

    def train_epoch(self, order: np.ndarray) -> EpochStats:
        """One pass over `order` ((steps, batch) sample indices), one optimizer step per row."""

    def evaluate(self) -> Any:
        """Number of test samples classified correctly (may be a device value)."""

    def synchronize(self) -> None:
        """Block until all queued device work is done (the harness calls it before every clock read)."""

    def peak_memory(self) -> tuple[int | None, str]:
        """(bytes, how it was read) of the device's peak memory in use so far, as the framework
        counts it; (None, why not) where it has no such counter (the CPU: see peak RSS)."""

    # For the parity gate (runner.parity.gate): not timed, so clarity over speed.
    def probe_step(self, idx: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Loss, logits and gradients of one batch at the current weights, without updating them;
        gradients in the canonical layout (runner.workload.layouts converts)."""

    def parameters(self) -> dict[str, np.ndarray]:
        """The current weights as NumPy arrays in the canonical layout and order."""

    def set_state(self, params: dict[str, np.ndarray], m: dict[str, np.ndarray], v: dict[str, np.ndarray],
                  t: int, buffers: dict[str, np.ndarray] | None = None) -> None:
        """Load canonical-layout float32 weights and Adam moments (m, v), `t` steps already taken:
        the next step is step t + 1, with its bias corrections. The gate checks single steps from
        the reference's state this way. `buffers` (models with batch norm only): the running
        statistics, canonical names (models.buffers); None keeps the current ones."""

    def buffers(self) -> dict[str, np.ndarray]:
        """Batch norm's running statistics in canonical names and order ({} without batch norm); the
        gate calls it for models with batch norm only (flux, which has none, lacks it)."""

    def adam_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        """(m, v, t): the Adam moments in the canonical layout and the number of steps taken."""
