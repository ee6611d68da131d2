"""Inter-process locks for the caches (reference models, masked LMs): with ``--jobs N`` or
Ray on one machine several processes may want the same model at once; the first trains it,
the others wait and then load what it saved.  ``fcntl.flock`` on a ``<folder>.lock`` file next
to the cache entry: released by the kernel when the holder dies, so a killed run never leaves
a stale lock."""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def cache_lock(entry: Path, what: str = "cache entry"):
    """Hold an exclusive lock on cache ``entry`` (a folder that may not exist yet)."""
    import fcntl

    entry = Path(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = entry.parent / f"{entry.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s %s", what, entry.name)
            t0 = time.perf_counter()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s %s: waited %.1fs for the other process", what, entry.name, time.perf_counter() - t0)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
