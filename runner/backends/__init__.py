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
    """Cheap check (no import): is the framework's package on the path at all?"""
    return importlib.util.find_spec(REGISTRY[name][1]) is not None


def install_hint(name: str) -> str:
    return REGISTRY[name][2]


def load(name: str):
    module, cls = REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(module), cls)
