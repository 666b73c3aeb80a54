"""Compute-once files shared by several processes working on one validity folder.

Several ``culture-neurons validate`` processes may run on the same ``--out`` (e.g. one per
analysis, to use more cores). Each expensive file (a cell table, a condition's scores) is made by
whoever claims it first: the claim is a ``<file>.lock`` created with ``O_EXCL`` holding the owner's
pid; the others wait for the file. A lock whose owner no longer runs is stale and is taken over, so
a killed process never blocks the next run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 5.0


def _lock(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def try_claim(path: Path) -> bool:
    """Take the claim on ``path`` (True), or find it held by a running process (False); stale claims are taken over."""
    lock = _lock(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(lock.read_text() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _alive(owner):
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def release(path: Path) -> None:
    """Drop the claim on ``path``."""
    _lock(path).unlink(missing_ok=True)


def compute_once(path: Path, load: Callable[[], T | None], make: Callable[[], T]) -> T:
    """``load()`` when it gives a result; else claim ``path`` and ``make()`` it (``make`` writes the file),
    or wait for the owner of the claim to finish."""
    while True:
        found = load()
        if found is not None:
            return found
        if try_claim(path):
            try:
                found = load()  # made by another process between our check and the claim
                return found if found is not None else make()
            finally:
                release(path)
        time.sleep(POLL_SECONDS)


def is_claimed(path: Path) -> bool:
    """Whether another running process holds the claim on ``path``."""
    lock = _lock(path)
    try:
        owner = int(lock.read_text() or "0")
    except (OSError, ValueError):
        return False
    return owner != os.getpid() and _alive(owner)
