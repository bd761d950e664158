"""The parent side of `verify`: one process per framework runs the parity gate; one table.

    python -m runner verify                                  # every installed framework, 50 steps
    python -m runner verify --framework torch,jax --steps 20 --dataset synthetic

Exit status 0 only if every framework passes; a framework that cannot run here is listed and fails
the gate only if it was named explicitly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from runner.workload.spec import Spec


def run(spec: Spec, frameworks: list[str], device: str, data_dir, steps: int, options: dict) -> list[dict]:
    """The parity result of each framework, each from a fresh process."""
    from runner.data import store
    from runner.parity import gate, yardstick

    folder = store.ensure(spec.dataset, data_dir)
    data = store.load_for(spec, folder)
    steps = min(steps, spec.steps_per_epoch)
    print(f"verify: float64 NumPy reference, {steps} steps", file=sys.stderr)
    yardstick.load_or_compute(spec, data.train_x, data.train_y, data.sha256.get("train-images-idx3-ubyte", ""),
                              steps)  # once here, cached on disk, so the framework processes only read it
    results = []
    with tempfile.TemporaryDirectory(prefix="dlbench-verify-") as tmp:
        for name in frameworks:
            print(f"verify: {name}", file=sys.stderr)
            req = Path(tmp) / f"{name}.json"
            out = Path(tmp) / f"{name}.result.json"
            req.write_text(json.dumps({"spec": spec.to_dict(), "framework": name, "device": device,
                                       "options": options.get(name, {}), "data_dir": str(folder),
                                       "steps": steps, "result": str(out)}))
            proc = subprocess.run([sys.executable, "-m", "runner.parity.gate", str(req)])
            if out.exists():
                results.append(json.loads(out.read_text()))
            else:  # the process died before it could report
                how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
                results.append({"framework": name, "parity": gate.error_result(steps, f"process {how}")})
    return results


def table(results: list[dict]) -> str:
    from tabulate import tabulate

    from runner.parity.gate import CHECK_NAMES, ENVELOPE_FACTOR, LIMITS, describe

    fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
    rows, envelopes = [], set()
    for r in results:
        p, fw = r["parity"], r.get("framework")
        version = (fw if isinstance(fw, dict) else {}).get("version") or ""
        name = fw["name"] if isinstance(fw, dict) else fw
        device = (r.get("device") or {}).get("kind") or "-"
        checks = p.get("checks") or {}
        if p.get("trajectory_envelope") is not None:
            envelopes.add((p["trajectory_envelope"], p["replicas"], checks["trajectory_max_diff"]["limit"]))
        rows.append({"framework": f"{name} {version}".strip(), "device": device,
                     **{k.replace("_", " "): fmt((checks.get(k) or {}).get("value")) for k in CHECK_NAMES},
                     "result": describe(p)})
    limits = ", ".join(f"{'|' + k + '|' if k == 'update_bias' else k} <= {v:g}" for k, v in LIMITS.items())
    traj = "; ".join(f"trajectory_max_diff <= {lim:.1e} ({ENVELOPE_FACTOR} x the {n} float32 replicas' envelope {env:.1e})"
                     for env, n, lim in sorted(envelopes))
    return (tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True)
            + f"\n\nlimits: {limits}{'; ' + traj if traj else ''} (vs float64 NumPy; see runner/parity/gate.py"
              f" for why)")
