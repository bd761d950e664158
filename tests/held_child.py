"""A child that waits: an interpreter wrapper for `--launcher-setting python=WRAPPER` that holds every
run's child (its arguments name runner.launch.child) until the test releases it, so a test can act
while a run is surely in progress, however fast or slow the machine. Anything else it runs at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

WAIT_S = 600  # generous: a loaded CI machine may take minutes to start a command


class Held:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.started, self.release = folder / "started", folder / "release"
        self.python = folder / "python"
        # An executable file (the launcher checks python= is one, never runs it to check).
        self.python.write_text(
            "#!/bin/sh\n"
            'case "$*" in *runner.launch.child*)\n'
            f"  : > '{self.started}'\n"
            f"  while [ ! -e '{self.release}' ]; do sleep 0.2; done;;\n"
            "esac\n"
            f"exec '{sys.executable}' \"$@\"\n")
        self.python.chmod(0o755)

    def setting(self) -> list[str]:
        return ["--launcher-setting", f"python={self.python}"]

    def wait_started(self, proc: subprocess.Popen, stderr: Path) -> None:
        """Until a child is held; fails with the command's stderr if it ends first or never gets there."""
        deadline = time.monotonic() + WAIT_S
        while not self.started.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no child was started (exit {proc.poll()}):\n{stderr.read_text()[-3000:]}")
            time.sleep(0.2)

    def let_go(self) -> None:
        self.release.touch()


def start(args: list, stderr: Path, cwd: Path) -> subprocess.Popen:
    """`python -m runner ARGS` in its own session (the test may end it and its child together),
    stdout and stderr to files (a pipe nobody reads could block it)."""
    with open(stderr.with_suffix(".out"), "w") as out, open(stderr, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                                start_new_session=True, stdout=out, stderr=err)
