"""SIGTERM and SIGINT as an exception, raised where the program can stop cleanly.

SLURM sends SIGTERM on preemption and at the time limit, and SIGKILL some seconds later (30 by
default). Python's default for SIGTERM is to die at once, with no ``finally`` blocks run; its
default for SIGINT raises ``KeyboardInterrupt`` anywhere, even halfway through a checkpoint write.

:func:`handle_signals` (installed once by the CLI) turns both signals into
:class:`~culture_neurons.errors.Interrupted`. Outside a :func:`deferred` block it is raised at once,
like ``KeyboardInterrupt``, so ``finally`` blocks and :func:`~culture_neurons.fileio.atomic_path`
clean up. Inside a :func:`deferred` block (a loop that can save its state) the signal is only
recorded: the loop asks :func:`pending` at its safe point (after a batch), saves, then calls
:func:`check`, which raises. A second signal during a deferred block raises at once, so a user who
presses Ctrl-C twice is never ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from .errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_state: dict[str, Any] = {"pending": None, "defer": 0}


def _handler(signum: int, frame: Any) -> None:
    if _state["defer"] > 0 and _state["pending"] is None:
        _state["pending"] = signum
        return
    _state["pending"] = None
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted` (restored on exit).

    Does nothing outside the main thread, where Python cannot install signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state["pending"] = None


def installed() -> bool:
    """True when :func:`handle_signals` is active (so :func:`deferred` will see signals)."""
    return signal.getsignal(signal.SIGTERM) is _handler


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block, the first signal is recorded instead of raised; see :func:`pending`.

    On leaving the block normally, a recorded signal is raised, so it is never lost.
    """
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
    check()


def pending() -> int | None:
    """The number of a signal recorded in a :func:`deferred` block and not yet raised, or None."""
    return _state["pending"]


def check(kept: str = "") -> None:
    """Raise :class:`Interrupted` (with ``kept`` in its message) when a signal is pending."""
    signum = _state["pending"]
    if signum is not None:
        _state["pending"] = None
        raise Interrupted(signum, kept)


def reset() -> None:
    """Forget a pending signal (for tests)."""
    _state["pending"] = None
