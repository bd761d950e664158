"""The table `verify` prints: one row per framework's parity result, distances against their limits.

    python -m runner verify                                  # every installed framework, 50 steps
    python -m runner verify --framework torch,jax --steps 20 --dataset synthetic

The results come from runner.launch.orchestrate.verify_all (one child process per framework).
"""

from __future__ import annotations


def table(results: list[dict]) -> str:
    from tabulate import tabulate

    from runner.parity.gate import CHECK_NAMES, ENVELOPE_FACTOR, LIMITS, describe

    fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
    rows, envelopes = [], set()
    for r in results:
        p, fw = r["parity"], r.get("framework")
        version = (fw if isinstance(fw, dict) else {}).get("version") or ""
        name = _name(r)
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
    logs = "".join(f"\nlog of {_name(r)}: {r['log']}" for r in results if r.get("log"))
    return (tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True)
            + f"\n\nlimits: {limits}{'; ' + traj if traj else ''} (vs float64 NumPy; see runner/parity/gate.py"
              f" for why)" + logs)


def _name(result: dict) -> str:
    fw = result.get("framework")
    return fw["name"] if isinstance(fw, dict) else str(fw)
