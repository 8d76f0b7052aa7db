"""One writer at a time for an output folder, across processes.

`flock` locks belong to the open file: the OS drops them when the holder exits, even on kill -9, so
a crashed run never leaves a stale lock behind. The holder writes its pid into the lock file, so the
next process can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from curate.errors import LockedError


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, *, busy: str) -> Iterator[None]:
    """Hold `lock_path` for the block, or raise LockedError at once.

    `busy` is the message's start, e.g. "manifest 'coco' is being written"; the holder and what to
    do are appended.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockedError(
                f"{busy} by {holder}; wait for it to finish "
                "(the lock is released when that process exits)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
