"""How a child process is started: one Launcher per way of starting it, each with its own settings.

    python -m runner run --launcher process      # the default: a subprocess of this one, on this machine

Every launcher starts the same thing, `python -m runner.launch.child REQUEST.json`, on the same
request file (runner.request); only where and how differ. New ways (a container through the
docker SDK or podman, torchrun ranks, Slurm job arrays) are one class each, registered in LAUNCHERS
by import path, so none of their dependencies loads unless it is chosen.

The caller owns the result: `launch()` returns how the child ended (`Exit`), and the caller reads
the record or result file the child wrote, or has the record module write one for a child that
died without (runner.records.build.lost).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

from runner.errors import UserError
from runner.request import LaunchSettings, RunRequest

CHILD = "runner.launch.child"


@dataclass(frozen=True)
class Exit:
    code: int                     # the child's exit status; negative: killed by that signal
    interrupted: str | None = None  # the signal that stopped the parent (and was passed on), if any

    def describe(self) -> str:
        return f"killed by {signal.Signals(-self.code).name}" if self.code < 0 else f"exited with code {self.code}"


class Launcher(abc.ABC):
    """A way to start the child. Subclasses are frozen dataclasses: their fields are the settings,
    recorded with every run they start."""

    name: ClassVar[str]

    def describe(self) -> LaunchSettings:
        return LaunchSettings(name=self.name, settings=dataclasses.asdict(self))

    def preflight(self) -> None:
        """Raise UserError if this launcher cannot start anything here (checked before any run)."""

    @abc.abstractmethod
    def start(self, request_file: Path, request: RunRequest) -> Exit:
        """Run the child on `request_file` to its end; on SIGINT/SIGTERM pass the signal on, give
        the child time to record what it finished, and say so in the Exit."""

    def supervise(self, wait: Callable[[], int], send: Callable[[str], None],
                  wait_at_most: Callable[[float], int]) -> Exit:
        """The signal protocol every launcher keeps: `wait()` for the child's exit code; if SIGINT or
        SIGTERM reaches us meanwhile, `send` the same signal on (a terminal's Ctrl-C has reached a
        child in our process group already; the child ignores signals once it handles the first, so
        passing it on is always safe, and passing on the same one keeps the record's "interrupted by
        SIGINT|SIGTERM" true), then `wait_at_most(grace_s)`, which ends the child if it overstays."""
        received = None
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            try:
                return Exit(wait())
            except KeyboardInterrupt:
                received = "SIGINT"
            except _Terminated:
                received = "SIGTERM"
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            send(received)
            return Exit(wait_at_most(self.grace_s), received)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if received:
                signal.signal(signal.SIGINT, signal.default_int_handler)


class _Terminated(BaseException):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: receive SIGTERM when the parent dies, even by SIGKILL (Linux), so
    a killed `dlbench run` never leaves a worker training on."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child may outlive a SIGKILLed parent
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class ProcessLauncher(Launcher):
    """A subprocess on this machine, in the same process group (a terminal's Ctrl-C reaches both)."""

    name: ClassVar[str] = "process"
    python: str | None = None     # the interpreter every child runs with; None: the framework's own
    grace_s: float = 120.0        # how long a signalled child gets to write its record

    def command(self, request_file: Path, framework: str) -> list[str]:
        """The child's command line; without a `python` setting, the interpreter of the framework's
        environment ($DLBENCH_PYTHONS: an image can hold one per framework), else this one."""
        from runner.backends.interpreters import python_for

        return [self.python or python_for(framework), "-m", CHILD, str(request_file)]

    def start(self, request_file: Path, request: RunRequest) -> Exit:
        parent = os.getpid()
        preexec = (lambda: _die_with_parent(parent)) if sys.platform.startswith("linux") else None
        proc = subprocess.Popen(self.command(request_file, request.framework), preexec_fn=preexec)

        def wait_at_most(seconds: float) -> int:
            try:
                return proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()

        return self.supervise(proc.wait, lambda name: proc.send_signal(getattr(signal, name)), wait_at_most)


# name -> "module:Class", imported only when chosen.
LAUNCHERS: dict[str, str] = {"process": "runner.launch.launchers:ProcessLauncher",
                             "container": "runner.launch.container:ContainerLauncher",
                             "torchrun": "runner.launch.torchrun:TorchrunLauncher"}


def get(name: str = "process", **settings) -> Launcher:
    if name not in LAUNCHERS:
        raise UserError(f"unknown launcher {name!r} (choose from {', '.join(LAUNCHERS)})")
    module, cls = LAUNCHERS[name].split(":")
    launcher_cls = getattr(importlib.import_module(module), cls)
    try:
        return launcher_cls(**settings)
    except TypeError as e:
        raise UserError(f"launcher {name}: bad settings ({e})") from None


def from_args(name: str, items: list[str], **given) -> Launcher:
    """The launcher `name` with `--launcher-setting KEY=VALUE` items, each value read as its
    field's type ('none' for the settings that may be unset), and `given` settings from other flags."""
    import typing

    launcher_cls = type(get(name))
    hints = typing.get_type_hints(launcher_cls)
    fields = {f.name for f in dataclasses.fields(launcher_cls)}
    settings = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in fields:
            raise UserError(f"--launcher-setting {item!r}: expected KEY=VALUE with KEY one of"
                            f" {', '.join(sorted(fields))} (launcher {name})")
        kinds = typing.get_args(hints[key]) or (hints[key],)
        if type(None) in kinds and text.lower() == "none":
            settings[key] = None
            continue
        kind = next(k for k in kinds if k is not type(None))
        try:
            settings[key] = kind(text)
        except ValueError:
            raise UserError(f"--launcher-setting {item!r}: {key} must be a {kind.__name__}") from None
    return get(name, **settings, **given)


def launch(request: RunRequest, launcher: Launcher) -> Exit:
    """Write `request` where the child can read it, start the child with `launcher`, wait for it."""
    if request.launcher != launcher.describe():
        raise ValueError(f"request says launcher {request.launcher}, started with {launcher.describe()}")
    with tempfile.TemporaryDirectory(prefix="dlbench-") as tmp:
        return launcher.start(request.write(Path(tmp) / "request.json"), request)
