"""Where Julia and the DLBenchFlux environment are, found without downloading anything.

    python -m runner run --framework flux      # flux_backend calls check() then load()
    python -m runner probe                     # buildinfo's flux collector calls load()

`import juliacall` on its own resolves Julia through juliapkg, which downloads Julia and
PythonCall when it finds none, and waits on the network where there is none. So nothing here
imports juliacall until a Julia executable is known and the julia/env environment is
instantiated; then juliacall is pointed at both (PYTHON_JULIACALL_EXE / PYTHON_JULIACALL_PROJECT,
which bypass juliapkg) and told to stay offline (PYTHON_JULIAPKG_OFFLINE=yes).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from runner.backends import install_hint
from runner.backends.base import FrameworkUnavailable

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "DLBenchFlux"

INSTALL = install_hint("flux")

# Settings juliacall/juliapkg read at import; recorded in the run's framework info.
SETTINGS = ("PYTHON_JULIACALL_EXE", "PYTHON_JULIACALL_PROJECT", "PYTHON_JULIACALL_THREADS",
            "PYTHON_JULIACALL_HANDLE_SIGNALS", "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_OFFLINE",
            "JULIA_NUM_THREADS", "JULIA_DEPOT_PATH", "DLBENCH_JULIA_PROJECT")

_loaded = None  # the juliacall module once DLBenchFlux is loaded (Julia starts once per process)


def project() -> Path:
    """The environment juliacall runs DLBenchFlux in: DLBENCH_JULIA_PROJECT, else julia/env."""
    return Path(os.environ.get("DLBENCH_JULIA_PROJECT") or ROOT / "julia" / "env")


def find_julia(environ=os.environ) -> tuple[str | None, str]:
    """(path of a julia executable, where it was found), or (None, what was looked at). Never
    downloads: explicit settings first, then PATH (juliaup puts its `julia` launcher there)."""
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE"):
        exe = environ.get(var)
        if exe:
            found = shutil.which(exe)
            return (found, var) if found else (None, f"{var}={exe} is not an executable")
    found = shutil.which("julia", path=environ.get("PATH"))
    if found:
        return found, "PATH"
    return None, "no julia on PATH, PYTHON_JULIACALL_EXE and PYTHON_JULIAPKG_EXE unset"


def available() -> bool:
    """The registry's cheap 'installed' check: juliacall importable and a Julia found (no import)."""
    return importlib.util.find_spec("juliacall") is not None and find_julia()[0] is not None


def _pythoncall_version(manifest: Path) -> str | None:
    try:
        import tomllib
    except ImportError:  # Python 3.10: skip the version check, juliacall reports a mismatch itself
        return None
    deps = tomllib.loads(manifest.read_text()).get("deps", {})
    entries = deps.get("PythonCall") or [{}]
    return entries[0].get("version")


def check(environ=os.environ) -> dict[str, str]:
    """Raise FrameworkUnavailable (fast, offline) unless juliacall, Julia and an instantiated
    environment are all there; else the juliacall settings in force once load() applies them
    (the user's own values win)."""
    if importlib.util.find_spec("juliacall") is None:
        raise FrameworkUnavailable("juliacall is not installed")
    exe, how = find_julia(environ)
    if exe is None:
        raise FrameworkUnavailable(f"no Julia found ({how}); not downloading one")
    # Both must be set for juliacall to bypass juliapkg (and so never download).
    settings = {"PYTHON_JULIAPKG_OFFLINE": "yes", "PYTHON_JULIACALL_EXE": exe}
    if not environ.get("PYTHON_JULIACALL_PROJECT"):
        env = project()
        manifest = env / "Manifest.toml"
        if not (env / "Project.toml").is_file():
            raise FrameworkUnavailable(f"no Julia environment at {env}")
        if not manifest.is_file():
            raise FrameworkUnavailable(f"the Julia environment {env} is not instantiated (no Manifest.toml)")
        want = importlib.metadata.version("juliacall")
        have = _pythoncall_version(manifest)
        if have is not None and have != want:
            raise FrameworkUnavailable(f"{manifest} has PythonCall {have}, but juliacall is {want}:"
                                       f" they must match (set PythonCall's compat in {env}/Project.toml)")
        settings["PYTHON_JULIACALL_PROJECT"] = str(env)
    else:  # the user's own environment, used as it is
        settings["PYTHON_JULIACALL_PROJECT"] = environ["PYTHON_JULIACALL_PROJECT"]
    threads = environ.get("PYTHON_JULIACALL_THREADS") or environ.get("JULIA_NUM_THREADS")
    if threads:
        settings["PYTHON_JULIACALL_THREADS"] = threads
        if threads != "1":  # juliacall's docs: Julia's GC safepoints segfault Python otherwise
            settings["PYTHON_JULIACALL_HANDLE_SIGNALS"] = "yes"
    return {k: environ.get(k) or v for k, v in settings.items()}


def settings(environ=os.environ) -> dict[str, str]:
    """The juliacall/juliapkg/Julia settings in force (for the record)."""
    return {k: environ[k] for k in SETTINGS if k in environ}


def load():
    """Start Julia in this process (once) with DLBenchFlux loaded; return juliacall's Main.
    FrameworkUnavailable if anything is missing, before any download could start."""
    global _loaded
    if _loaded is not None:
        return _loaded
    for k, v in check().items():
        os.environ.setdefault(k, v)
    try:
        import juliacall
    except Exception as e:  # juliapkg raises plain Exception ("could not find Julia ...")
        raise FrameworkUnavailable(f"cannot start Julia through juliacall: {type(e).__name__}: {e}") from e
    jl = juliacall.Main
    try:
        jl.seval(f"using {PACKAGE}")
    except Exception as e:
        raise FrameworkUnavailable(f"cannot load {PACKAGE} in {os.environ.get('PYTHON_JULIACALL_PROJECT')}:"
                                   f" {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    _loaded = jl
    return jl


def use_gpu_package(jl, device: str) -> bool:
    """Load CUDA.jl + cuDNN.jl ('cuda') or Metal.jl ('metal') if the environment has them, which
    activates DLBenchFlux's extension; whether the device is then functional."""
    packages = {"cuda": ("CUDA", "cuDNN"), "metal": ("Metal",)}[device]
    have = all(bool(jl.seval(f'Base.find_package("{p}") !== nothing')) for p in packages)
    if not have:
        return False
    jl.seval(f"using {', '.join(packages)}")
    return bool(jl.seval(f"{PACKAGE}.functional(Val(:{device}))"))


if __name__ == "__main__":  # python -m runner.backends.julia_env: where Julia is, or why not
    try:
        print(check())
    except FrameworkUnavailable as e:
        print(f"unavailable: {e} (install: {INSTALL})", file=sys.stderr)
        raise SystemExit(3)
