"""The table `verify` prints: one row per framework's parity result, distances against their limits.

    python -m runner verify                                  # every installed framework, 50 steps
    python -m runner verify --framework torch,jax --steps 20 --dataset synthetic

The results come from runner.launch.orchestrate.verify_all (one child process per framework).
"""

from __future__ import annotations


def table(results: list[dict]) -> str:
    from tabulate import tabulate

    from runner.parity.gate import (BN_CHECK, BN_LIMIT, CHECK_NAMES, ENVELOPE_FACTOR, GRAD_NOISE_FACTOR, LIMITS,
                                    UPDATE_NOISE_FACTOR, describe)

    fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
    with_bn = any(BN_CHECK in (r["parity"].get("checks") or {}) for r in results)
    names = (*CHECK_NAMES, *([BN_CHECK] if with_bn else []))
    rows, envelopes = [], set()
    grown = {"grad_rel_diff": set(), "update_rel_diff": set()}  # limits grown with measured float32 noise
    for r in results:
        p, fw = r["parity"], r.get("framework")
        version = (fw if isinstance(fw, dict) else {}).get("version") or ""
        name = _name(r)
        device = (r.get("device") or {}).get("kind") or "-"
        checks = p.get("checks") or {}
        if p.get("trajectory_envelope") is not None:
            envelopes.add((p["trajectory_envelope"], p["replicas"], checks["trajectory_max_diff"]["limit"]))
        for check, seen in grown.items():
            limit = (checks.get(check) or {}).get("limit")
            if limit is not None and limit > LIMITS[check]:
                seen.add(limit)
        rows.append({"framework": f"{name} {version}".strip(), "device": device,
                     **{k.replace("_", " "): fmt((checks.get(k) or {}).get("value")) for k in names},
                     "result": describe(p)})
    limits = ", ".join(f"{'|' + k + '|' if k == 'update_bias' else k} <= {v:g}" for k, v in LIMITS.items())
    limits += f", {BN_CHECK} <= {BN_LIMIT:g}" if BN_CHECK in names else ""
    for name, factor, what in (("grad_rel_diff", GRAD_NOISE_FACTOR, "gradient"),
                               ("update_rel_diff", UPDATE_NOISE_FACTOR, "update")):
        limits += "".join(f"; {name} <= {g:.1e} here ({factor} x the float32 {what} noise {g / factor:.1e})"
                          for g in sorted(grown[name]))
    traj = "; ".join(f"trajectory_max_diff <= {lim:.1e} ({ENVELOPE_FACTOR} x the {n} float32 replicas' envelope {env:.1e})"
                     for env, n, lim in sorted(envelopes))
    logs = "".join(f"\nlog of {_name(r)}: {r['log']}" for r in results if r.get("log"))
    return (tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True)
            + f"\n\nlimits: {limits}{'; ' + traj if traj else ''} (vs float64 NumPy; see runner/parity/gate.py"
              f" for why)" + logs)


def _name(result: dict) -> str:
    fw = result.get("framework")
    return fw["name"] if isinstance(fw, dict) else str(fw)
