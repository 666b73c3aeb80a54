"""One exception family for the whole package.

Every message names the thing at fault (file and line, config key, example id, model family) and,
where one exists, the fix. The CLI prints ``str(error)`` on one line and exits non-zero.
"""

from __future__ import annotations


class CultureNeuronsError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: int = 2


class InputError(CultureNeuronsError):
    """A user-supplied file or value is malformed (bad JSONL line, missing field, bad option)."""


class ConfigError(CultureNeuronsError):
    """A run configuration is malformed; the message names the key (``culture_neurons.pipeline.config``)."""


class ModelLoadError(CultureNeuronsError):
    """A model or tokenizer could not be found or loaded."""


class ArchitectureError(CultureNeuronsError):
    """No adapter knows where the sites of this model live, or a site map does not fit it."""


class ScoringError(CultureNeuronsError):
    """Scoring could not produce a trustworthy table (ambiguous target, NaN gradients, ...)."""


class TableError(CultureNeuronsError):
    """A score table is unreadable or cannot be combined with another one."""


class Interrupted(CultureNeuronsError):
    """SIGTERM or SIGINT arrived; raised at a safe point (see :mod:`culture_neurons.signals`).

    ``signum`` is the signal's number and ``exit_code`` the shell's convention for it (143 for
    SIGTERM, 130 for SIGINT). The message says what was kept and how to resume; code that saves
    state on the way out adds to it with :meth:`with_kept`.
    """

    def __init__(self, signum: int, kept: str = "") -> None:
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        try:
            self.signal_name = signal.Signals(self.signum).name
        except ValueError:
            self.signal_name = f"signal {self.signum}"
        self.kept = kept
        super().__init__(self._message())

    def _message(self) -> str:
        return f"interrupted by {self.signal_name}" + (f"; {self.kept}" if self.kept else "")

    def with_kept(self, kept: str) -> Interrupted:
        """A copy whose message also says ``kept`` (what was saved, how to resume)."""
        both = f"{self.kept}; {kept}" if self.kept else kept
        return Interrupted(self.signum, both)
