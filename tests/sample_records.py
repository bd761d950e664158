"""Fixture records for tests: a real smoke-run record (tests/fixtures) varied field by field."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

from runner import records

# A real smoke run, brought to the current schema by the same upgrade path old records take.
BASE = records.upgrade(json.loads((Path(__file__).parent / "fixtures" / "record_smoke.json").read_text()))


def make_record(status="ok", framework="torch", version="2.13.0+cpu", device="cpu", steady=None,
                epochs=None, spec_hash=None, test_acc=None, train_acc=None, loss=None, parity="pass",
                options=None, **timing):
    """A valid record; `epochs` (per-epoch seconds) and `test_acc` set the derived numbers too;
    `parity` is pass, fail, error or None (not checked)."""
    r = copy.deepcopy(BASE)
    r["run_id"] = uuid.uuid4().hex
    r["status"] = status
    r["framework"].update(name=framework, version=version)
    r["device"]["kind"] = device
    if spec_hash:
        r["spec_hash"] = spec_hash
    if epochs is not None:
        r["timing"]["epoch_train_s"] = list(epochs)
        r["timing"]["first_epoch_s"] = epochs[0]
        r["timing"]["total_train_s"] = sum(epochs)
    if steady is not None:
        r["timing"]["steady_epoch_s"] = steady
    if test_acc is not None:
        r["metrics"]["test_accuracy"] = list(test_acc)
        r["metrics"]["best_test_accuracy"] = max(test_acc)
        r["metrics"]["final_test_accuracy"] = test_acc[-1]
    if train_acc is not None:
        r["metrics"]["train_accuracy"] = list(train_acc)
        r["metrics"]["best_train_accuracy"] = max(train_acc)
    if loss is not None:
        r["metrics"]["train_loss"] = list(loss)
        r["metrics"]["mean_train_loss"] = sum(loss) / len(loss)
    if parity is None:
        r["parity"] = None
    else:
        r["parity"]["status"] = parity
    if options is not None:
        r["framework"]["options"] = dict(options)
    r["timing"].update(timing)
    return r
