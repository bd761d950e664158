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
from typing import ClassVar

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

    @abc.abstractmethod
    def start(self, request_file: Path, request: RunRequest) -> Exit:
        """Run the child on `request_file` to its end; on SIGINT/SIGTERM pass the signal on, give
        the child time to record what it finished, and say so in the Exit."""


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
    python: str | None = None     # the interpreter the child runs with; None: this one
    grace_s: float = 120.0        # how long a signalled child gets to write its record

    def command(self, request_file: Path) -> list[str]:
        return [self.python or sys.executable, "-m", CHILD, str(request_file)]

    def start(self, request_file: Path, request: RunRequest) -> Exit:
        parent = os.getpid()
        preexec = (lambda: _die_with_parent(parent)) if sys.platform.startswith("linux") else None
        proc = subprocess.Popen(self.command(request_file), preexec_fn=preexec)
        received = None
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            try:
                return Exit(proc.wait())
            except KeyboardInterrupt:
                received = "SIGINT"
            except _Terminated:
                received = "SIGTERM"
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # A terminal's Ctrl-C has reached the child already; a signal sent to us alone has not.
            # The child ignores signals once it handles the first, so passing it on is always safe,
            # and passing on the same one keeps the record's "interrupted by SIGINT|SIGTERM" true.
            proc.send_signal(getattr(signal, received))
            try:
                code = proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            return Exit(code, received)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if received:
                signal.signal(signal.SIGINT, signal.default_int_handler)


# name -> "module:Class". The container (issue: platforms), torchrun and slurm (issue: scale-out)
# launchers plug in here.
LAUNCHERS: dict[str, str] = {"process": "runner.launch.launchers:ProcessLauncher",
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


def launch(request: RunRequest, launcher: Launcher) -> Exit:
    """Write `request` where the child can read it, start the child with `launcher`, wait for it."""
    if request.launcher != launcher.describe():
        raise ValueError(f"request says launcher {request.launcher}, started with {launcher.describe()}")
    with tempfile.TemporaryDirectory(prefix="dlbench-") as tmp:
        return launcher.start(request.write(Path(tmp) / "request.json"), request)
