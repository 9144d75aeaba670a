"""The embedded stack's working directory: private to its user (0700), never one another user
owns, holding the generated Redis password in a file only that user can read (0600)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

PASSWORD_FILE = "redis.password"


class WorkdirError(RuntimeError):
    """A working directory Pantau must not use; the message names it and says why."""


def secure_workdir(path: Path) -> Path:
    """Create `path` (0700) or take it if this user owns it, tightening it to 0700. Another
    user's directory (a planted /tmp/pantau-<uid>, say) is refused: its owner could read the
    secrets and the Redis data, or swap the files."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):  # an existing one is checked below instead
        path.mkdir(mode=0o700, parents=True, exist_ok=False)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise WorkdirError(f"workdir {path} is not a directory (a symlink or a file is refused)")
    if info.st_uid != os.getuid():
        raise WorkdirError(f"workdir {path} belongs to another user (uid {info.st_uid}); "
                           f"remove it or choose another --workdir")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def redis_password(workdir: Path) -> str:
    """The embedded Redis's password, generated once and kept in `workdir/redis.password`
    (0600), so a restarted stack reaches the Redis data it left."""
    f = Path(workdir) / PASSWORD_FILE
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if f.stat().st_uid != os.getuid():
            raise WorkdirError(f"{f} belongs to another user") from None
        f.chmod(0o600)
        return f.read_text().strip()
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value
