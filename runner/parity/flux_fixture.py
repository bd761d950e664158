"""Writes the fixture of the Julia test suite (julia/test/runtests.jl): one step of the float64 reference.

    python -m runner.parity.flux_fixture [FOLDER]     # default julia/test/fixture
    julia --project=julia -e 'using Pkg; Pkg.test()'    # reads it

A flux_backend setup bundle (reference weights, 16 synthetic samples, layers, spec fields) plus the
batch (0-based indices), a layout probe (A[a, b, c] = 100a + 10b + c) and the float64 reference's
step 1: loss, logits, gradients and the weights after one Adam step, all written through the
same bundle, so Julia reads the expected values in the layout DLBenchFlux produces. The committed
copy is checked against a fresh one by tests/test_flux.py.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from runner.backends import flux_backend, julia_bundle
from runner.workload import reference
from runner.workload.spec import Spec, make_spec

DEFAULT = Path(__file__).resolve().parents[2] / "julia" / "test" / "fixture"


def fixture_spec() -> Spec:
    return make_spec("smoke", dataset="synthetic", batch_size=16, limit_train=16, limit_test=16,
                     eval_batch_size=8)


def tensors_and_meta(data_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Everything the fixture holds, before writing."""
    from runner.data import store
    from runner.parity import float64

    spec = fixture_spec()
    data = store.load_for(spec, data_dir)
    params = reference.initial_params(spec)
    batch = reference.epoch_order(spec, 0)[0]
    ref = float64.trace(spec, params, data.train_x, data.train_y, batch[None])
    a, b, c = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    tensors = {**params, "train_x": data.train_x, "train_y": data.train_y.astype(np.int64),
               "test_x": data.test_x, "test_y": data.test_y.astype(np.int64),
               "batch": batch.astype(np.int64), "layout_probe": (100 * a + 10 * b + c).astype(np.int64),
               "expect_loss": np.array([ref["losses"][0]]), "expect_logits": ref["logits"],
               **{f"expect_grad:{n}": g for n, g in ref["grads"].items()},
               **{f"expect_param:{n}": p for n, p in ref["params"].items()}}
    meta = {"spec": flux_backend.spec_fields(spec), "layers": flux_backend.layer_list(spec.model),
            "params": list(params), "classes": 10, "spec_hash": spec.hash}
    return tensors, meta


def write(folder: Path = DEFAULT) -> Path:
    from runner.data import store

    with tempfile.TemporaryDirectory(prefix="dlbench-fixture-") as tmp:
        data_dir = store.ensure("synthetic", Path(tmp), log=lambda m: None)
        tensors, meta = tensors_and_meta(data_dir)
    return julia_bundle.write(folder, tensors, meta)


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
