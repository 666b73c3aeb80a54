"""The step machinery of a run: manifest, resume, the model loaded once, and the context a stage gets.

A *stage* (``export``, ``score``, ...) is a :class:`Stage`: a name and a function of a
:class:`Context`. It does its work as *steps* through :meth:`Context.step`: a step's inputs are
hashed (its config slice, the output hashes of the steps it depends on, the package version); a
step whose inputs and outputs are unchanged since it last finished is skipped. Everything is
written atomically, only by rank 0 under ``torchrun``, and the manifest is saved after each step.

A stage hands what later stages need through the context's public tables (:attr:`Context.exports`,
:attr:`Context.tables`, :attr:`Context.baseline`), never through private state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data.example import Example, read_examples
from ..distributed import barrier, broadcast_object, init_from_env, is_main, local_device
from ..errors import CultureNeuronsError, Interrupted
from ..fileio import sha256_json
from ..models.access import model_provenance
from ..models.loading import load_model, load_tokenizer, model_identity, release_memory
from ..progress import progress
from ..version import __version__
from .config import PipelineConfig
from .manifest import Manifest
from .result import StepResult

StepFn = Callable[[], tuple[list[Path], dict[str, Any]]]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: ``run(context)`` does its steps; ``enabled(config)`` says whether it runs at all."""

    name: str
    run: Callable[[Context], None]
    enabled: Callable[[PipelineConfig], bool] = lambda config: True


@dataclass(frozen=True)
class FileRef:
    """One exported examples file or score table: its step key, path in the run directory, benchmark and role."""

    key: str
    rel: str
    bench: str
    role: str


class Context:
    """What a stage sees: the config, the run directory, the manifest, the model (loaded on first use),
    the step helper, and the files earlier stages produced."""

    def __init__(
        self, config: PipelineConfig, run_dir: Path, *, dry_run: bool, progress: bool, echo: Callable[[str], None]
    ) -> None:
        # Join the process group first: which rank is the writer must be known before the first step.
        init_from_env(config.model.device)
        self.config = config
        self.run_dir = Path(run_dir)
        self.dry_run = dry_run
        self.progress = progress
        self.main = is_main()
        self.echo = echo if self.main else (lambda _msg: None)
        # Rank 0 reads the manifest and every rank works from its copy, so all take the same decisions.
        data = broadcast_object(Manifest.open(self.run_dir).data if self.main else None)
        self.manifest = Manifest(self.run_dir, data, writer=self.main and not dry_run)
        self.results: list[StepResult] = []
        self.stage_started: float | None = None  # perf_counter when the current stage began (set by run_pipeline)
        self.stage_wall: dict[str, float] = {}  # each finished stage's wall time in this sitting (not in a dry run)
        self.pending: set[str] = set()  # steps that ran or would run in this invocation (their outputs change)
        self.exports: dict[str, FileRef] = {}  # export name -> exported examples file
        self.tables: dict[str, FileRef] = {}  # export name -> score table
        self.baseline: list[dict[str, Any]] = []  # each evaluation benchmark's accuracy without intervention
        self.warnings: list[str] = []  # results at chance and the like, repeated in the summary
        self.resuming = False  # whether the step now running continues an interrupted attempt
        self._loaded: tuple[Any, Any] | None = None
        self._tokenizer: Any = None
        self._examples: dict[str, list[Example]] = {}

    # -- the model, lazily --------------------------------------------------------------------

    def model(self) -> tuple[Any, Any]:
        """The run's model and tokenizer, loaded on first use and recorded in the manifest."""
        if self._loaded is None:
            m = self.config.model
            init_from_env(m.device)
            start = time.perf_counter()
            model, tokenizer = load_model(
                m.name,
                dtype=m.dtype,
                device=local_device(m.device),
                device_map=m.device_map,
                max_memory=m.max_memory,
                progress=self.progress,
                revision=m.revision,
            )
            self._loaded = (model, tokenizer)
            self.manifest.set(
                model={"config": asdict(m), "identity": model_identity(model), "provenance": model_provenance(model)}
            )
            self.echo(f"[model] loaded {m.name} in {time.perf_counter() - start:.1f} s")
        return self._loaded

    def tokenizer(self) -> Any:
        if self._loaded is not None:
            return self._loaded[1]
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.model.name, revision=self.config.model.revision)
        return self._tokenizer

    def release_model(self) -> None:
        """Drop the run's model (a stage that loads its own copies, such as training, frees the memory first)."""
        if self._loaded is not None:
            self._loaded = None
            release_memory()

    # -- steps --------------------------------------------------------------------------------

    def upstream(self, keys: Sequence[str]) -> dict[str, Any]:
        """The recorded output hashes of the steps ``keys`` (part of a downstream step's inputs)."""
        return {k: self.manifest.output_hashes(k) for k in keys}

    def result_of(self, key: str) -> StepResult | None:
        """This invocation's outcome of step ``key``."""
        return next((s for s in self.results if s.key == key), None)

    def step(
        self,
        key: str,
        stage: str,
        label: str,
        inputs: dict[str, Any],
        fn: StepFn,
        depends: Sequence[str] = (),
        all_ranks: bool = False,
        unknown_inputs: bool = False,
    ) -> StepResult:
        """Run ``fn`` unless the step is fresh. ``fn`` returns (outputs, info).

        ``depends`` are upstream steps whose output hashes are part of the inputs; ``unknown_inputs``
        marks a dry-run step whose inputs an upstream step that would run has not produced yet.
        """
        digest = self._digest(inputs, depends)
        prev = self.manifest.steps.get(key, {})
        fresh = self.is_fresh(key, inputs, depends, unknown_inputs)
        if self.dry_run or fresh:
            if not fresh:
                self.pending.add(key)
            status = "skipped" if not self.dry_run else "up to date" if fresh else "would run"
            return self._record(StepResult(key, stage, label, status, info=dict(prev.get("info", {}))))
        self.pending.add(key)
        # Only an interrupted attempt with the same inputs may leave partial work (checkpoints) to reuse.
        self.resuming = (
            prev.get("status") in ("running", "failed", "interrupted") and prev.get("inputs_sha256") == digest
        )
        try:
            self.manifest.start(key, stage, digest)
            start = time.perf_counter()
            outputs, info = fn() if all_ranks or self.main else ([], {})
            barrier()
            if not self.main:
                outputs = []
            seconds = time.perf_counter() - start
            self.manifest.finish(key, outputs, seconds, info)
        except (Interrupted, KeyboardInterrupt) as exc:
            with contextlib.suppress(CultureNeuronsError, OSError):  # a full disk must not hide the signal
                self.manifest.fail(key, "interrupted by a signal", status="interrupted")
            raise self._interrupted(exc, label) from None
        except BaseException as exc:
            with contextlib.suppress(CultureNeuronsError, OSError):  # nor the first error (e.g. a full disk)
                self.manifest.fail(key, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, CultureNeuronsError) and not getattr(exc, "run_kept", False):
                exc.args = (f"{exc}; {self.kept()}",)
                exc.run_kept = True  # type: ignore[attr-defined]
            raise
        self.manifest.steps[key] = broadcast_object(self.manifest.steps[key])  # rank 0's output hashes for every rank
        return self._record(
            StepResult(key, stage, label, "ran", seconds, dict(self.manifest.steps[key].get("info", info)))
        )

    def _digest(self, inputs: dict[str, Any], depends: Sequence[str]) -> str:
        return sha256_json({"inputs": inputs, "upstream": self.upstream(depends), "version": __version__})

    def is_fresh(
        self, key: str, inputs: dict[str, Any], depends: Sequence[str] = (), unknown_inputs: bool = False
    ) -> bool:
        """Whether :meth:`step` would skip this step (same inputs, outputs intact, no upstream step pending)."""
        upstream_changes = unknown_inputs or any(d in self.pending for d in depends)
        # Only rank 0 can check the files, so its verdict is everyone's (they must enter the same collectives).
        return broadcast_object(
            not upstream_changes and self.manifest.is_fresh(key, self._digest(inputs, depends)) if self.main else None
        )

    def kept(self) -> str:
        """What a stopped run leaves behind, and how to go on (for one-line messages)."""
        done = sum(1 for rec in self.manifest.steps.values() if rec.get("status") == "done")
        return f"{done} finished step(s) are kept in {self.run_dir}; rerun the same command to resume"

    def _interrupted(self, exc: BaseException, label: str) -> Interrupted:
        signum = exc.signum if isinstance(exc, Interrupted) else 2
        base = exc if isinstance(exc, Interrupted) else Interrupted(signum)
        return base.with_kept(f"step '{label}' marked interrupted; {self.kept()}")

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        return result

    def warn(self, message: str) -> None:
        """A warning about the results: echoed now and listed again in the run's summary."""
        if message not in self.warnings:
            self.warnings.append(message)
            self.echo(message)

    def log_stage(self, stage: str, detail: str = "") -> None:
        steps = [s for s in self.results if s.stage == stage]
        ran = [s for s in steps if s.status == "ran"]
        # The stage's wall time in this sitting: its steps' times leave out work between steps (batched passes).
        secs = time.perf_counter() - self.stage_started if self.stage_started else sum(s.seconds for s in steps)
        if self.dry_run:
            would = sum(s.status == "would run" for s in steps)
            self.echo(f"[{stage}] {would} of {len(steps)} step(s) would run{'; ' + detail if detail else ''}")
        else:
            self.echo(
                f"[{stage}] {len(ran)} of {len(steps)} step(s) ran, {len(steps) - len(ran)} up to date, {secs:.1f} s"
                + (f"; {detail}" if detail else "")
            )

    def bar(self, total: int, desc: str, unit: str = "ex") -> Any:
        # culture_neurons.progress: a tqdm bar on a terminal, plain log lines in a file or a pipe
        return progress(total=total, desc=desc, unit=unit, disable=not self.progress or not self.main or self.dry_run)

    # -- files ----------------------------------------------------------------------------------

    def read(self, rel: str) -> list[Example]:
        """The examples of a run-directory file (read once per run)."""
        if rel not in self._examples:
            self._examples[rel] = read_examples(self.run_dir / rel)
        return self._examples[rel]

    def exports_of(self, role: str) -> list[FileRef]:
        return [f for f in self.exports.values() if f.role == role]
