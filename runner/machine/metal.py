"""Apple Silicon: which framework reaches the GPU (PyTorch MPS, tensorflow-metal, jax-metal), and what is missing.

    python -m runner.machine.metal [--framework torch,tensorflow,jax]   # the check alone (platforms/m1/setup.sh ends with it)
    python -m runner run --platform m1                                  # the same check, before any worker starts

The facts come from runner.machine.buildinfo (each framework imported in a process of its own, so a
Metal plugin that crashes TensorFlow's import cannot take the check down). check() is a pure function of
those facts and of the OS/CPU, so tests hand it a fake Mac. A framework without a working Metal path
runs on the CPU (with `--device auto`, the m1 default) and the message says why and how to fix it; with an
explicit `--device mps` it is not run.
"""

from __future__ import annotations

import platform
import sys

from runner.errors import UserError

SETUP = "bash platforms/m1/setup.sh"
# Why there is no jax-metal in platforms/m1/requirements.lock: platforms/m1/README.md ("JAX").
JAX_METAL_NOTE = ("jax-metal 0.1.1, its last release, works only up to jax 0.5.0 (jax-ml/jax#27062) and"
                  " dlbench needs jax >= 0.10")


def _mac_problem(system: str, machine: str) -> str | None:
    if system != "Darwin":
        return f"this is {system} {machine}, not macOS: --platform m1 is for Apple-Silicon Macs"
    if machine != "arm64":
        return (f"this Mac reports {machine}: an Intel Mac, or Python running under Rosetta (install an arm64"
                " Python, e.g. from python.org or Homebrew in /opt/homebrew)")
    return None


def _torch(info: dict) -> tuple[bool, str]:
    if info.get("mps_available"):
        return True, f"torch {info.get('version')}: MPS available"
    if not info.get("mps_built"):
        return False, f"torch {info.get('version')} was built without MPS: {SETUP} installs the macOS arm64 wheel"
    return False, (f"torch {info.get('version')} has MPS but the OS does not offer it (MPS needs macOS 12.3+ on"
                   " Apple Silicon; not inside a VM)")


def _tensorflow(info: dict) -> tuple[bool, str]:
    plugin, version = info.get("metal_plugin"), info.get("version")
    if info.get("gpus"):
        return True, f"tensorflow {version} with tensorflow-metal {plugin}: Metal GPU {', '.join(info['gpus'])}"
    if plugin is None:
        return False, f"tensorflow {version} has no Metal plugin: pip install tensorflow-metal (or {SETUP})"
    return False, (f"tensorflow-metal {plugin} is installed but tensorflow {version} sees no GPU: the plugin did"
                   f" not load (each plugin release fits specific TensorFlow releases; {SETUP} installs a pair)")


def _jax(info: dict) -> tuple[bool, str]:
    plugin, version = info.get("metal_plugin"), info.get("version")
    if info.get("metal"):
        return True, f"jax {version} with jax-metal {plugin}: METAL device"
    if plugin is None:
        return False, f"jax {version} has no Metal plugin ({JAX_METAL_NOTE})"
    return False, f"jax-metal {plugin} is installed but jax {version} shows no METAL device ({JAX_METAL_NOTE})"


CHECKS = {"torch": _torch, "tensorflow": _tensorflow, "jax": _jax}


def check(name: str, info: dict, device_flag: str | None = None) -> dict:
    """{'framework', 'device' ('mps', 'cpu' or None = not run), 'metal' (bool), 'message'} for one framework
    from its buildinfo facts. --device cpu skips the question; --device mps makes a missing Metal path fatal
    for that framework; otherwise (auto) it falls back to the CPU."""
    if device_flag == "cpu":
        return {"framework": name, "device": "cpu", "metal": False, "message": "--device cpu"}
    if "error" in info:
        hint = (" (a tensorflow-metal that does not match this TensorFlow can break its import: pip uninstall"
                " tensorflow-metal runs it on the CPU)") if name == "tensorflow" else ""
        return {"framework": name, "device": None, "metal": False,
                "message": f"{name} cannot be imported: {info['error']}{hint}"}
    if name not in CHECKS:
        return {"framework": name, "device": "cpu" if device_flag != "mps" else None, "metal": False,
                "message": f"{name} has no Metal path in dlbench"}
    metal, message = CHECKS[name](info)
    device = "mps" if metal else (None if device_flag == "mps" else "cpu")
    if not metal:
        message += "; not run (--device mps)" if device is None else "; runs on the CPU"
    return {"framework": name, "device": device, "metal": metal, "message": message}


def plan(frameworks: list[str], device_flag: str | None = None, facts: dict | None = None,
         system: str | None = None, machine: str | None = None) -> list[dict]:
    """check() for every framework; UserError when this is not an Apple-Silicon Mac. `facts` (buildinfo
    results by framework) and system/machine stand in for this machine in tests."""
    problem = _mac_problem(system or platform.system(), machine or platform.machine())
    if problem:
        raise UserError(problem)
    if facts is None:
        from runner.machine import buildinfo

        facts = buildinfo.finish(buildinfo.start([f for f in frameworks if f in buildinfo.COLLECTORS]))
    return [check(name, facts.get(name, {"error": "no build facts"}), device_flag) for name in frameworks]


def render(rows: list[dict]) -> str:
    return "\n".join(f"m1: {r['framework']:<10} -> {r['device'] or 'not run':<7} {r['message']}" for r in rows)


def main(argv: list[str]) -> int:
    import argparse

    from runner import backends

    p = argparse.ArgumentParser(prog="python -m runner.machine.metal", description=__doc__.splitlines()[0])
    p.add_argument("--framework", default="all", help="comma-separated names, or all (default: every installed one)")
    p.add_argument("--device", choices=("auto", "mps", "cpu"), default=None)
    args = p.parse_args(argv)
    names = ([n for n in backends.names() if backends.installed(n)] if args.framework == "all"
             else args.framework.split(","))
    try:
        rows = plan(names, args.device)
    except UserError as e:
        print(f"dlbench: {e}", file=sys.stderr)
        return 2
    print(render(rows))
    return 0 if all(r["metal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
