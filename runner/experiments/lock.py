"""One command at a time on one experiment's files: a lock that the kernel lets go of when its holder dies.

    python -m runner sweep ... --out results/sweep     # holds results/sweep/.sweep.lock while it runs
    python -m runner tune ... --study lenet --out DIR  # holds DIR/.tune-lenet.lock (the study's SQLite file)

Two sweeps into one --out would both run every point (neither sees the other's records until they are
written), and two tunes on one study would each take the other's running trial for one a crash left
behind. So the second command stops, before anything starts, with one line that names the holder
(exit 2). The lock is flock(2) on a file: released when the holder's process ends, however it ends
(SIGKILL and the OOM killer included), so a file left behind by a dead process never blocks; the file
only says who holds it. Children get no copy of it (O_CLOEXEC): a worker that outlives its parent
for a moment does not keep it. Where the file system has no locks (some network and FUSE mounts),
the command goes on and says on one line what is not guarded.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from runner.errors import UserError


def _holder(fd: int) -> str:
    """"pid 1234 on host h since 11:40:02 UTC", as the holder wrote it; empty if it had not yet."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


@contextmanager
def held(path: Path, busy: str, unguarded: str = ""):
    """Hold the lock at `path` for the with-block, which gets True (held) or False (the file system
    has no locks: a one-line warning said so, ending with `unguarded`). Another process holding it:
    UserError(`busy`, with "{holder}" replaced by who that is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = _holder(fd)
                raise UserError(busy.replace("{holder}", f" ({who})" if who else "")) from None
            print(f"dlbench: warning: cannot lock {path} ({e.strerror or e})"
                  + (f": {unguarded}" if unguarded else ""), file=sys.stderr)
            yield False
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # lets go of the lock; the file stays (removing it would race a process opening it)
