"""Killing a subprocess in a test, and skipping (not failing) when the kill came too late.

A kill-and-resume test sends a signal at some point of a run; on a fast or a loaded machine the run
may already have finished by then. That says nothing about resuming, so the test skips instead of
failing (and never passes vacuously).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess

import pytest


def kill_or_skip(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 120.0) -> int:
    """Send ``sig`` to ``proc`` and wait; skip the test when ``proc`` had exited before the signal landed.

    Returns the process's return code (``-sig``) when the kill landed.
    """
    with contextlib.suppress(ProcessLookupError):  # already gone: the return code below tells
        proc.send_signal(sig)
    code = proc.wait(timeout=timeout)
    if code != -sig:
        pytest.skip(f"the process exited with {code} before {signal.Signals(sig).name} landed; nothing to resume")
    return code
