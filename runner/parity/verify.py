"""The table `verify` prints: one row per framework's parity result, distances against their limits.

    python -m runner verify                                  # every installed framework, 50 steps
    python -m runner verify --framework torch,jax --steps 20 --dataset synthetic

The results come from runner.launch.orchestrate.verify_all (one child process per framework).
"""

from __future__ import annotations


def table(results: list[dict]) -> str:
    from tabulate import tabulate

    from runner.parity.gate import TOLERANCES

    fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
    rows = []
    for r in results:
        p, fw = r["parity"], r.get("framework")
        version = (fw if isinstance(fw, dict) else {}).get("version") or ""
        name = _name(r)
        device = (r.get("device") or {}).get("kind") or "-"
        verdict = p["status"].upper() if p["status"] != "pass" else "pass"
        if p["failed"]:
            verdict += " (" + ", ".join(p["failed"]) + ")"
        if p["error"]:
            verdict += f": {p['error']}"
        rows.append({"framework": f"{name} {version}".strip(), "device": device,
                     **{k.replace("_", " "): fmt(p[k]) for k in TOLERANCES}, "result": verdict})
    limits = ", ".join(f"{k} <= {v:g}" for k, v in TOLERANCES.items())
    logs = "".join(f"\nlog of {_name(r)}: {r['log']}" for r in results if r.get("log"))
    return (tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True)
            + f"\n\nlimits: {limits} (vs float64 NumPy; see runner/parity/gate.py for why)" + logs)


def _name(result: dict) -> str:
    fw = result.get("framework")
    return fw["name"] if isinstance(fw, dict) else str(fw)
