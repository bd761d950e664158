"""Framework backends, registered lazily by import path so no framework loads before it is used.

    python -m runner run --framework torch
    python -m runner run --framework all

A backend runs the spec in its framework and nothing else; timing, records and tables live in the
harness. Every backend meets runner.backends.base.Backend.
"""

from __future__ import annotations

import importlib
import importlib.util

from runner import lists
from runner.errors import UserError

# name -> (module:Class, the Python module whose presence means "installed" -- or "module:function"
# answering that without importing the framework --, install hint)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "torch": ("runner.backends.torch_backend:TorchBackend", "torch",
              "pip install 'dlbench[torch]' -c constraints.txt"),
    "tensorflow": ("runner.backends.tf_backend:TensorflowBackend", "tensorflow",
                   "pip install 'dlbench[tensorflow]' -c constraints.txt"),
    "jax": ("runner.backends.jax_backend:JaxBackend", "jax", "pip install 'dlbench[jax]' -c constraints.txt"),
    # juliacall alone is not enough: it downloads Julia when none is found. Installed = juliacall
    # importable and a julia executable found (runner.backends.julia_env, no import, no network).
    "flux": ("runner.backends.flux_backend:FluxBackend", "runner.backends.julia_env:available",
             "pip install 'dlbench[julia]' -c constraints.txt; install Julia >= 1.11 with juliaup (or set"
             " PYTHON_JULIACALL_EXE to a julia executable); julia --project=julia/env -e 'using Pkg;"
             " Pkg.instantiate()' (NVIDIA: Pkg.add([\"CUDA\", \"cuDNN\"]) first; Apple: Pkg.add(\"Metal\")). Or set"
             " PYTHON_JULIACALL_EXE and PYTHON_JULIACALL_PROJECT to an environment with PythonCall and DLBenchFlux"),
}


def names() -> list[str]:
    return list(REGISTRY)


def parse_frameworks(text: str) -> list[str]:
    """'all', one name, or a comma-separated list -> names, in registry order for 'all'."""
    if text.strip() == "all":
        return names()
    chosen = lists.items("--framework", text)
    unknown = [t for t in chosen if t not in REGISTRY]
    if unknown or not chosen:
        raise UserError(f"unknown framework {', '.join(unknown) or repr(text)}"
                        f" (choose from {', '.join(REGISTRY)}, or all)")
    return list(dict.fromkeys(chosen))


def installed(name: str) -> bool:
    """Cheap check (no framework import): is the framework's package there? Under another interpreter
    ($DLBENCH_PYTHONS, runner.backends.interpreters) that interpreter answers; a `module:function`
    probe (flux: juliacall and a Julia) is asked here."""
    from runner.backends import interpreters

    probe = REGISTRY[name][1]
    if ":" in probe and name not in interpreters.table():
        module, function = probe.split(":")
        return bool(getattr(importlib.import_module(module), function)())
    return interpreters.installed(name, probe.split(":")[0])


def install_hint(name: str) -> str:
    return REGISTRY[name][2]


def options_for(name: str, given: dict[str, str]) -> dict:
    """Check `given` options against the backend's OPTIONS and its check_options (combinations that
    cannot run together), importing the module, not the framework."""
    from runner.backends.base import parse_options

    cls = load(name)
    try:
        options = parse_options(name, getattr(cls, "OPTIONS", {}), given)
        getattr(cls, "check_options", lambda options: None)(options)
        return options
    except ValueError as e:
        raise UserError(str(e)) from None


def check_devices(options: dict[str, dict[str, str]], cuda) -> None:
    """Each backend's check_device(options, cuda) (a mode the device cannot run, e.g. torch's CUDA
    graph on the CPU): UserError before anything starts. cuda() says whether the runs go to a CUDA
    GPU (runner.machine.platforms.on_cuda): asked only where a backend has options."""
    for name, given in options.items():
        check = getattr(load(name), "check_device", None)
        if check is not None and given:
            try:
                check(given, cuda())
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


def create(name: str, spec, device: str, options: dict | None = None):
    """A new, not yet set-up backend of framework `name` (imports the framework)."""
    return load(name)(spec, device, options or {})
