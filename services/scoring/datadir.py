"""Each scoring worker's own Faust data directory, held by a file lock for the life of the process."""

from __future__ import annotations

import fcntl
import itertools
import os
import tempfile

_held_locks: list[int] = []


def worker_datadir() -> str:
    """The first `pantau-scoring-<uid>-<n>` that no live worker on this machine holds, locked
    for the life of the process: two workers never share a datadir (a store that keeps files,
    such as rocksdb, would break), a restarted worker gets its old one back, and the kernel
    drops the lock of a worker killed with SIGKILL."""
    base = os.path.join(tempfile.gettempdir(), f"pantau-scoring-{os.getuid()}")
    for n in itertools.count():
        fd = os.open(f"{base}-{n}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held_locks.append(fd)
        return f"{base}-{n}"
    raise AssertionError("unreachable")
