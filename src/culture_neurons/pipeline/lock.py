"""One ``run`` per run directory: ``RUN/.lock`` names the process that holds it.

A second ``run`` on the same directory stops at once, naming the first one's pid and host. A lock
left by a process that died (same host, pid gone) is taken over. A lock from another host is never
taken over: that host's process may be alive, and only a person can tell (the message says how to
free it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CultureNeuronsError
from ..fileio import write_json_atomic
from ..rundir import LOCK


class RunLocked(CultureNeuronsError):
    """Another process is running the pipeline in this run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: a half-written lock of a dead process (writes are atomic, so rare)
    return data if isinstance(data, dict) else {}


def _stale(holder: dict) -> bool:
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return True
    return host == socket.gethostname() and not _alive(pid)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` for the block; raises :class:`RunLocked` when a live process holds it."""
    path = Path(run_dir) / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:
                continue  # released meanwhile
            if not _stale(holder):
                raise RunLocked(
                    f"{run_dir} is in use by another culture-neurons run (pid {holder['pid']} on {holder['host']}, "
                    f"since {holder.get('since', '?')}); wait for it to finish, "
                    f"or delete {path} if that process is gone"
                ) from None
            write_json_atomic(path, me)  # take over the lock of a dead process
            if _holder(path) == me:
                break
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    else:
        raise RunLocked(f"could not take the lock {path}; another run is starting in {run_dir}")
    try:
        yield path
    finally:
        if _holder(path) == me:
            path.unlink(missing_ok=True)
