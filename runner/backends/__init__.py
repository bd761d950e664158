"""Framework backends, registered lazily by import path so no framework loads before it is used.

    python -m runner run --framework torch
    python -m runner run --framework all

A backend runs the spec in its framework and nothing else; timing, records and tables live in the
harness. Every backend meets runner.backends.base.Backend.
"""

from __future__ import annotations

import importlib
import importlib.util

from runner.errors import UserError

# name -> (module:Class, the Python module whose presence means "installed", install hint)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "torch": ("runner.backends.torch_backend:TorchBackend", "torch",
              "pip install 'dlbench[torch]' -c constraints.txt"),
    "tensorflow": ("runner.backends.tf_backend:TensorflowBackend", "tensorflow",
                   "pip install 'dlbench[tensorflow]' -c constraints.txt"),
    "jax": ("runner.backends.jax_backend:JaxBackend", "jax", "pip install 'dlbench[jax]' -c constraints.txt"),
}


def names() -> list[str]:
    return list(REGISTRY)


def parse_frameworks(text: str) -> list[str]:
    """'all', one name, or a comma-separated list -> names, in registry order for 'all'."""
    if text.strip() == "all":
        return names()
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in REGISTRY]
    if unknown or not chosen:
        raise UserError(f"unknown framework {', '.join(unknown) or repr(text)}"
                        f" (choose from {', '.join(REGISTRY)}, or all)")
    return list(dict.fromkeys(chosen))


def installed(name: str) -> bool:
    """Cheap check (no import): is the framework's package on the path at all? For a framework that runs
    under another interpreter ($DLBENCH_PYTHONS, runner.machine.interpreters), that interpreter answers."""
    from runner.machine import interpreters

    return interpreters.installed(name, REGISTRY[name][1])


def install_hint(name: str) -> str:
    return REGISTRY[name][2]


def options_for(name: str, given: dict[str, str]) -> dict:
    """Check `given` options against the backend's OPTIONS (imports the module, not the framework)."""
    from runner.backends.base import parse_options

    try:
        return parse_options(name, getattr(load(name), "OPTIONS", {}), given)
    except ValueError as e:
        raise UserError(str(e)) from None


def parse_option_args(items: list[str], frameworks: list[str]) -> dict[str, dict[str, str]]:
    """['jax.loop=scan', ...] -> {'jax': {'loop': 'scan'}}, every framework checked."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not (eq and dot and option and value):
            raise UserError(f"--option {item!r}: expected FRAMEWORK.KEY=VALUE, e.g. jax.loop=scan")
        if name not in REGISTRY:
            raise UserError(f"--option {item!r}: unknown framework {name!r} (choose from {', '.join(REGISTRY)})")
        out.setdefault(name, {})[option] = value
    for name in frameworks:
        options_for(name, out.get(name, {}))
    return out


def load(name: str):
    module, cls = REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(module), cls)
