"""Signalling a subprocess in a test at a point of its progress, never after a fixed delay.

A kill-and-resume test checks something only when its signal lands mid-work. A fixed delay cannot
promise that: on a fast machine the run has finished by then, and on a slow one it has not started.
:func:`kill_when` waits for a sign of progress that the command leaves behind (the n-th scoring
checkpoint on disk, the n-th complete training checkpoint, a line it prints) and sends the signal
right then. When the process exits before the sign appears, or the signal finds it already finished,
the test fails and says so: it never passes, or skips, with nothing resumed.

Triggers are zero-argument predicates, polled: :func:`exists`, :func:`scoring_checkpoint_at`,
:func:`training_checkpoint_at`, and :meth:`Output.line` for a line the process prints. The only
clock here is a generous limit (minutes) that turns a hung process into a failure.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

Condition = Callable[[], bool]

# A hang guard only: a trigger that has not happened after this long never will.
HANG_LIMIT = 600.0


def wait_for(
    proc: subprocess.Popen, condition: Condition, what: str, poll: float = 0.002, timeout: float = HANG_LIMIT
) -> None:
    """Return as soon as ``condition()`` holds; fail the test if ``proc`` exits first or hangs.

    ``what`` names the trigger in the failure message ("scoring checkpoint 3").
    """
    deadline = time.monotonic() + timeout
    while not condition():
        code = proc.poll()
        if code is not None:
            pytest.fail(f"the process exited with {code} before {what}: the signal could not land mid-work")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"{what} did not happen within {timeout:.0f} s; the process was killed as hung")
        time.sleep(poll)


def kill_when(
    proc: subprocess.Popen,
    condition: Condition,
    what: str,
    sig: int = signal.SIGKILL,
    expect: int | None = None,
    poll: float = 0.002,
    timeout: float = HANG_LIMIT,
) -> int:
    """Send ``sig`` to ``proc`` once ``condition()`` holds, wait for it, and return its exit code.

    The test fails unless the signal landed mid-work, that is unless the exit code is ``expect``
    (default ``-sig``: killed by the signal; a command that handles SIGTERM exits with 143 instead).
    A process that finished on its own exits with 0 and fails the test too.
    """
    wait_for(proc, condition, what, poll, timeout)
    with contextlib.suppress(ProcessLookupError):  # already gone: the exit code below says so
        proc.send_signal(sig)
    code = proc.wait(timeout=timeout)
    wanted = -sig if expect is None else expect
    if code != wanted:
        why = ": it had finished before the signal landed" if code == 0 else ""
        name = signal.Signals(sig).name
        pytest.fail(f"{name} was sent at {what}, but the process exited with {code}, not {wanted}{why}")
    return code


def exists(path: Path) -> Condition:
    """True once ``path`` exists."""
    return path.exists


def checkpoint_batches(path: Path) -> int | None:
    """The ``batches_done`` a scoring checkpoint records (read from its safetensors header), or None.

    The checkpoint is replaced by a rename, so the file read is always one whole checkpoint.
    """
    try:
        with path.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > path.stat().st_size:  # not a safetensors file
                return None
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error):
        return None
    try:
        return int(json.loads(header["__metadata__"]["culture_neurons_checkpoint"])["batches_done"])
    except (KeyError, TypeError, ValueError):
        return None


def scoring_checkpoint_at(path: Path, batches: int) -> Condition:
    """True once the scoring checkpoint ``path`` records at least ``batches`` finished batches."""

    def reached() -> bool:
        done = checkpoint_batches(path)
        return done is not None and done >= batches

    return reached


def training_checkpoints(folder: Path, complete: bool = True) -> list[int]:
    """The steps of the Trainer's ``checkpoint-<step>`` folders in ``folder``, oldest first.

    ``complete``: only those whose ``trainer_state.json`` (written last) parses.
    """
    steps = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            name, _, step = path.name.partition("-")
            if name != "checkpoint" or not step.isdigit():
                continue
            if complete:
                try:
                    json.loads((path / "trainer_state.json").read_text())
                except (OSError, ValueError):
                    continue
            steps.append(int(step))
    return sorted(steps)


def training_checkpoint_at(folder: Path, step: int, complete: bool = True) -> Condition:
    """True once a checkpoint of step ``step`` or later is in ``folder``.

    ``complete=False`` triggers as soon as its folder appears, usually while the Trainer is still
    writing it; ``True`` once it is whole, while the next step runs.
    """

    def reached() -> bool:
        steps = training_checkpoints(folder, complete)
        return bool(steps) and steps[-1] >= step

    return reached


class Output:
    """Reads a process's output stream in a thread, so the pipe never fills, and keeps every line."""

    def __init__(self, stream: IO) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO) -> None:
        for raw in stream:
            self.lines.append(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)

    def line(self, pattern: str, where: Callable[[re.Match], bool] = lambda m: True) -> Condition:
        """True once a line matching ``pattern`` (``re.search``), for which ``where(match)`` holds, was printed."""
        compiled = re.compile(pattern)
        state = {"checked": 0, "found": False}  # each poll reads only the lines that are new since the last

        def printed() -> bool:
            end = len(self.lines)
            for text in self.lines[state["checked"] : end]:
                match = compiled.search(text)
                state["found"] = state["found"] or bool(match and where(match))
            state["checked"] = end
            return state["found"]

        return printed

    def text(self, timeout: float = HANG_LIMIT) -> str:
        """Everything printed; waits for the stream to close (call after the process has exited)."""
        self._thread.join(timeout)
        return "".join(self.lines)
