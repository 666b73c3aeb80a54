"""Progress bars that work in a narrow terminal and in a batch job's log file.

On a terminal this is tqdm with an ETA, in a layout that drops the bar before the numbers when the
window is narrow. Without a terminal (SLURM logs, pipes) a bar would write one carriage-return
line per update into the log, so instead one plain line, with the same numbers (count, percentage,
elapsed time, ETA, rate), is logged at most every ``interval`` seconds, and one at the end. Every
bar of the package comes from :func:`progress`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

DEFAULT_INTERVAL = 30.0
_WIDE = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
_NARROW = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} ETA {remaining}"
_NO_TOTAL = "{desc}: {n_fmt} {unit} [{elapsed}, {rate_fmt}]"


def _fmt_rate(per_second: float, unit: str) -> str:
    """``12.5 ex/s``, or ``3.2 s/ex`` below one per second, as tqdm writes it."""
    if per_second >= 1:
        return f"{per_second:.0f} {unit}/s" if per_second >= 100 else f"{per_second:.1f} {unit}/s"
    return f"{1 / per_second:.1f} s/{unit}"


def _one_line(text: str) -> str:
    """``text`` without control characters: a name with a newline or carriage return stays on its line."""
    return "".join(c if c.isprintable() else " " for c in text)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class LogProgress:
    """A tqdm-like counter that writes one line every ``interval`` seconds (and one at the end).

    It supports the part of tqdm's API the package uses: iteration, ``update``, ``close``,
    ``set_postfix_str`` and use as a context manager.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "working",
        unit: str = "it",
        interval: float = DEFAULT_INTERVAL,
        stream: TextIO | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.n = 0
        self.postfix = ""
        self.start = self.last = clock()
        self.closed = False
        self.printed_n: int | None = None  # the count on the last line logged

    def line(self) -> str:
        """The current state as one line: count, percentage, elapsed time, ETA and rate."""
        elapsed = self.clock() - self.start
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
            eta = elapsed / self.n * (self.total - self.n) if self.n else None
            text += f", {_fmt_seconds(elapsed)} elapsed, ETA {_fmt_seconds(eta) if eta is not None else '?'}"
        else:
            text += f" {self.unit}, {_fmt_seconds(elapsed)} elapsed"
        if self.n > 0 and elapsed > 0:
            text += f", {_fmt_rate(self.n / elapsed, self.unit)}"
        return _one_line(text + (f", {self.postfix}" if self.postfix else ""))

    def _emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.last = self.clock()
        self.printed_n = self.n

    def update(self, n: int = 1) -> None:
        """Advance by ``n``; log a line when ``interval`` seconds have passed since the last one."""
        self.n += n
        if self.clock() - self.last >= self.interval:
            self._emit()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Extra text appended to each line (tqdm compatible)."""
        self.postfix = text

    def close(self) -> None:
        """Log the final line once (only when something was counted and it was not the last line logged)."""
        if not self.closed:
            self.closed = True
            # A periodic line that fell on the last update already says everything the final one would.
            if self.n and self.printed_n != self.n:
                self._emit()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LogProgress was created without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(LogProgress):
    """A disabled bar: counts, prints nothing."""

    def _emit(self) -> None:
        self.last = self.clock()


def _interval() -> float:
    raw = os.environ.get("CULTURE_NEURONS_PROGRESS_INTERVAL", "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 and math.isfinite(value) else DEFAULT_INTERVAL


def bar_format(columns: int, has_total: bool) -> str:
    """The tqdm layout for a terminal ``columns`` wide: the bar goes first when space is short."""
    if not has_total:
        return _NO_TOTAL
    return _WIDE if columns >= 80 else _NARROW


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "working",
    unit: str = "it",
    disable: bool = False,
    interval: float | None = None,
    leave: bool = False,
) -> Any:
    """A progress bar over ``iterable`` (or a manual one with ``total``), tqdm-compatible.

    On a terminal: tqdm with elapsed time and ETA, its layout chosen for the window width (the
    description is shortened so that the numbers always fit). Without a terminal on stderr (a file,
    a pipe): a :class:`LogProgress` that logs plain lines without carriage returns, at most one
    every ``interval`` seconds (default 30, or the ``CULTURE_NEURONS_PROGRESS_INTERVAL`` environment
    variable) and a final one. ``disable`` (``-q``) gives a silent counter.
    """
    if disable:
        return _Silent(iterable, total=total, desc=desc, unit=unit)
    if not sys.stderr.isatty():
        return LogProgress(iterable, total=total, desc=desc, unit=unit, interval=interval or _interval())
    from tqdm.auto import tqdm

    columns = shutil.get_terminal_size((80, 24)).columns
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    # Keep the description to a third of the line, so the ETA is what survives a narrow window.
    room = max(columns // 3, 8)
    short = desc if len(desc) <= room else desc[: room - 1] + "…"
    return tqdm(
        iterable,
        total=total,
        desc=short,
        unit=unit,
        leave=leave,
        dynamic_ncols=True,
        bar_format=bar_format(columns, total is not None),
        file=sys.stderr,
    )
