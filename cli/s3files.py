"""Durable file writes shared by the S3 store (cli/s3store.py) and its merging (cli/s3merge.py):
an object is written to a fsynced temporary file in its folder, then given its name, and the
folder is fsynced so that the name survives a power cut as the content does."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def synced_temp(folder: Path, data: bytes) -> Iterator[str]:
    """A temporary file in `folder` holding `data`, fsynced; the caller links or renames it
    into place. Whatever is left of it is removed on the way out."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)
