"""What a child process shows the user, and what it keeps in its log.

    python -m runner run ...     # the terminal: progress lines, warnings, one line per failure
                                 # results/logs/FRAMEWORK-RUNID.log: all of that, plus every framework
                                 # banner (TF C++/absl, oneDNN, CUDA probing, XLA) and tracebacks

Frameworks print their banners from C/C++ straight to file descriptors 1 and 2, below Python, so
the descriptors themselves are pointed at the log; Python's own sys.stderr keeps a copy of the
terminal and writes to both. The log is the full story, the terminal the part a person reads.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

_log = None  # the open log while framework_output_to is active


def log_only(text: str) -> None:
    """Write to the log alone (a traceback: the terminal gets one line that points to the log)."""
    (_log or sys.stderr).write(text if text.endswith("\n") else text + "\n")


class Tee:
    """A text stream that writes to several (line-buffered, so order survives interleaving)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            try:
                s.write(text)
                s.flush()
            except OSError:  # a full disk under the log must not end the run: the terminal still shows it
                pass
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            try:
                s.flush()
            except OSError:
                pass

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        """Loggers close their streams at exit; the streams behind a Tee are closed by their owner."""
        self.flush()

    @property
    def encoding(self) -> str:
        return "utf-8"


@contextmanager
def framework_output_to(path: Path):
    """Inside: fds 1 and 2 go to `path` (appended), sys.stderr to the terminal and `path`,
    sys.stdout to `path` only (nothing of ours is printed on a child's stdout)."""
    path = Path(path)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    except OSError as e:
        print(f"dlbench: no log file ({path}: {e.strerror}); framework output stays on the terminal",
              file=sys.stderr)
        yield None
        return
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    streams = sys.stdout, sys.stderr
    # A framework's Python log records with no handler of their own (JAX's "Jax plugin configuration
    # error" and its traceback, where the CUDA plugin finds no GPU) reach logging's last resort, which
    # writes to sys.stderr, the terminal too: it writes to the log alone here.
    last_resort = logging.lastResort
    to_log = logging.StreamHandler(log)
    to_log.setLevel(logging.WARNING)
    global _log
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout, sys.stderr, _log = log, Tee(terminal, log), log
        logging.lastResort = to_log
        yield log
    finally:
        logging.lastResort = last_resort
        sys.stdout, sys.stderr, _log = *streams, None
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        terminal.close()
        log.close()
