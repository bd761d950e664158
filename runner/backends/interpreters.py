"""Which Python runs each framework: $DLBENCH_PYTHONS, a JSON map {framework: interpreter}, else this one.

    DLBENCH_PYTHONS='{"tensorflow": "/opt/venvs/tfjax/bin/python", "jax": "/opt/venvs/tfjax/bin/python"}'
    python -m runner probe          # buildinfo imports each framework with its interpreter
    python -m runner run            # the launcher starts each framework's worker with python_for(name)

Why: an image can need more than one environment. dlbench:cuda does (images/cuda/torch.in says why:
torch's CUDA 13 wheels and TensorFlow/JAX's CUDA 12 wheels overwrite each other's cuDNN), and every
framework already runs in a process of its own, so each process can simply be started with the
interpreter of the environment that holds its framework. A framework missing from the map uses
sys.executable, so outside such an image nothing changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from runner.errors import UserError

VAR = "DLBENCH_PYTHONS"


def table(environ=os.environ) -> dict[str, str]:
    """The map from $DLBENCH_PYTHONS ({} when unset); UserError when it is not a JSON object of strings."""
    raw = environ.get(VAR)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise UserError(f"{VAR} is not JSON ({e}): expected e.g. {{\"jax\": \"/opt/venvs/jax/bin/python\"}}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UserError(f"{VAR} must be a JSON object of framework name -> interpreter path, got {raw!r}")
    return value


def python_for(framework: str, environ=os.environ) -> str:
    """The interpreter that runs `framework`'s worker (and its buildinfo probe)."""
    return table(environ).get(framework, sys.executable)


def installed(framework: str, module: str, environ=os.environ) -> bool:
    """Whether `module` imports under the framework's interpreter. Only for a framework in the map (for the
    rest the caller's own importlib.util.find_spec answers without a process)."""
    python = table(environ).get(framework)
    if python is None:
        import importlib.util

        return importlib.util.find_spec(module) is not None
    try:
        done = subprocess.run([python, "-c", f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
