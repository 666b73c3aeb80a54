"""The run-directory contract: file names, step keys, paths, and the fingerprints steps are keyed on.

Everything that names a file or a step of a run lives here, so that the pipeline, the training
stage, the report and the CLI agree by calling the same functions instead of rebuilding strings.

- :func:`slug` is the one rule that turns a group, benchmark or condition name into a file name.
- ``*_key`` functions build step keys; ``*_rel`` functions build paths relative to the run
  directory; :func:`parse_export_key` and friends read them back (nothing else splits keys).
- :func:`data_signature`, :func:`file_hashes` and :func:`model_fingerprint` are the identities a
  step's inputs hash is computed from.

Run directories written before this module existed used :func:`legacy_slug`. They still resume:
a step's recorded output paths (in ``manifest.json``) win over the paths this module would build,
see :func:`recorded_or`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .fileio import sha256_file

# A name is its own slug only when it already is a plain lowercase ASCII word list: it starts and ends
# with a letter or digit and never doubles a separator. Every other name gets "--" and a hash, and
# "--" never occurs in a plain name, so the two forms cannot meet.
_PLAIN = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
# Names Windows reserves whatever the extension; hashed so that a run directory can be copied there.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_STEM_MAX = 48
_HASH_LEN = 10


def slug(name: str) -> str:
    """The file-name form of a group, benchmark or condition name.

    Readable (lowercase ASCII letters, digits, ``.``, ``_``, ``-``), safe on any filesystem, and
    injective even where the filesystem ignores case: a name that is already a plain lowercase
    ASCII word (``blend``, ``random-0``, ``usa``) is kept as it is; any other name becomes its
    ASCII-folded stem plus ``--`` and a hash of the exact name (``South Korea`` ->
    ``south_korea--<hash>``, ``日本`` -> ``x--<hash>``, ``USA`` -> ``usa--<hash>``).
    """
    if not isinstance(name, str):
        raise TypeError(f"slug() takes a string, got {type(name).__name__}")
    if _PLAIN.match(name) and name.split(".", 1)[0] not in _RESERVED:
        return name
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    stem = _UNSAFE.sub("_", folded)
    stem = re.sub(r"([._-])[._-]+", r"\1", stem)[:_STEM_MAX].strip("._-") or "x"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    return f"{stem}--{digest}"


def legacy_slug(name: str) -> str:
    """The file-name rule of run directories written before :func:`slug` (``South Korea`` -> ``South_Korea``).

    Not injective; only used to find the files of an old run directory.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


# ---------------------------------------------------------------------------------------------
# step keys and paths (relative to the run directory, POSIX form)

MANIFEST = "manifest.json"
LOCK = ".lock"
SELECT_KEY = "select"
TRAIN_KEY = "train"
REPORT_KEY = "report"
REPORT_FILE = "report.html"
TRAIN_DIR = "train"
NEURONS_DIR = "neurons"
CARDS_KEY = "cards"
CARDS_REL = f"{NEURONS_DIR}/cards.jsonl"  # one neuron card per line (the cards stage)
GENERAL_STEM = "general"
# What an exported examples file is for: scored (culture), control, CountryRC filter, or evaluated.
# "exclude": a table whose top neurons the selections drop ([select] exclude).
ROLES = ("score", "control", "countryrc", "eval", "exclude")


def export_name(role: str, benchmark: str) -> str:
    """The name of one exported examples file and of its score table: ``<role>-<benchmark slug>``."""
    if role not in ROLES:
        raise ValueError(f"unknown export role {role!r}; one of {', '.join(ROLES)}")
    return f"{role}-{slug(benchmark)}"


def export_key(role: str, benchmark: str) -> str:
    return f"export:{export_name(role, benchmark)}"


def examples_rel(role: str, benchmark: str) -> str:
    return f"examples/{export_name(role, benchmark)}.jsonl"


def score_key(role: str, benchmark: str) -> str:
    return f"score:{export_name(role, benchmark)}"


def scores_rel(role: str, benchmark: str) -> str:
    return f"scores/{export_name(role, benchmark)}.safetensors"


def random_stem(seed: int) -> str:
    return f"random-{int(seed)}"


def specific_stem(country: str) -> str:
    return f"specific-{slug(country)}"


def block_name(benchmark: str, block: int, blocks: int, seed: int) -> str:
    """One block of a benchmark's identification questions, scored for stability selection:
    ``<bench slug>/<block>-of-<blocks>-seed<seed>``."""
    return f"{slug(benchmark)}/{int(block)}-of-{int(blocks)}-seed{int(seed)}"


def block_key(benchmark: str, block: int, blocks: int, seed: int) -> str:
    """The step that scores one block (``[select.*] stability``)."""
    return f"resample:{block_name(benchmark, block, blocks, seed)}"


def block_rel(benchmark: str, block: int, blocks: int, seed: int) -> str:
    return f"scores/blocks/{block_name(benchmark, block, blocks, seed)}.safetensors"


def neurons_rel(stem: str) -> str:
    """``neurons/<stem>.json``; a stem is ``general``, ``random-<seed>`` or ``specific-<country slug>``."""
    return f"{NEURONS_DIR}/{stem}.json"


def random_seed_of(stem: str) -> int | None:
    """The seed of a ``random-<seed>`` stem, else None."""
    head, _, tail = stem.partition("-")
    return int(tail) if head == "random" and tail.isdigit() else None


def is_specific(stem: str) -> bool:
    return stem.startswith("specific-")


def drawn_stem(stem: str, index: int) -> str:
    """The ``index``-th random set the evaluate stage draws at the size of the neuron file ``stem`` (a
    country's set for cross-culture; never a file of its own): ``<stem>~random-<index>``."""
    return f"{stem}~random-{int(index)}"


def drawn_of(stem: str) -> tuple[str, int] | None:
    """``(file stem, index)`` of a :func:`drawn_stem` (a slug never holds ``~``), else None."""
    head, sep, tail = stem.rpartition("~random-")
    return (head, int(tail)) if sep and head and tail.isdigit() else None


def condition_key(benchmark: str, label: str) -> str:
    """The step that evaluates one benchmark under one condition (``original``, ``suppress:general``, ...)."""
    return f"evaluate:{benchmark}:{label}"


def parse_condition_key(key: str) -> tuple[str, str] | None:
    """``(benchmark, condition label)`` of a condition step key, else None (labels may hold ``:``)."""
    if not key.startswith("evaluate:"):
        return None
    bench, sep, label = key.removeprefix("evaluate:").partition(":")
    return (bench, label) if sep and bench and label else None


def condition_rel(benchmark: str, label: str) -> str:
    return f"eval/conditions/{slug(benchmark)}/{slug(label)}.parquet"


def experiment_key(name: str) -> str:
    return f"experiment:{name}"


def experiment_rel(name: str) -> str:
    """The folder of one experiment's ``summary.json``, ``rows.parquet`` (and ``matrix.csv``)."""
    return f"eval/{name}"


def stage_of_key(key: str) -> str:
    """The stage a step key belongs to (``export``, ``score``, ``evaluate``, ...): its first part."""
    return key.partition(":")[0]


def parse_export_key(key: str) -> tuple[str, str] | None:
    """``(role, benchmark slug)`` of an export step key, else None."""
    if not key.startswith("export:"):
        return None
    role, sep, rest = key.removeprefix("export:").partition("-")
    return (role, rest) if sep and role in ROLES else None


def benchmark_of_export(key: str, benchmarks: list[str] | tuple[str, ...]) -> str | None:
    """The benchmark of an export step key among ``benchmarks`` (either slug rule), else the slug itself."""
    parsed = parse_export_key(key)
    if parsed is None:
        return None
    for name in benchmarks:
        if parsed[1] in (slug(name), legacy_slug(name)):
            return name
    return parsed[1]


def recorded_output(steps: Mapping[str, Any], key: str, rel: str, suffix: str | None = None) -> str:
    """The path a finished step actually wrote, else ``rel``.

    A run directory made by an older version may name a file by :func:`legacy_slug`; its manifest
    records the real path, and reusing it is what lets that run resume. ``suffix`` picks one of
    several recorded outputs (``.parquet``).
    """
    rec = steps.get(key) or {}
    outputs = [p for p in rec.get("outputs", {}) if suffix is None or p.endswith(suffix)]
    if rec.get("status") == "done" and len(outputs) == 1:
        return outputs[0]
    return rel


# ---------------------------------------------------------------------------------------------
# fingerprints: what a step's inputs hash is computed from


def data_files(path: Path) -> list[Path]:
    """``path`` itself (a file), or every file under it, sorted."""
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def data_signature(path: Path | None) -> list[Any]:
    """Cheap identity of local data files (relative path, size, mtime): a change re-exports."""
    if path is None:
        return ["built-in or hub"]
    return [
        [p.relative_to(path).as_posix() if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns]
        for p in data_files(path)
    ]


def file_hashes(path: Path | None, limit: int = 200) -> dict[str, str]:
    """SHA-256 of up to ``limit`` data files (recorded with an export, not part of its inputs)."""
    if path is None:
        return {}
    return {str(p): sha256_file(p) for p in data_files(path)[:limit]}


def data_dir_for(benchmark: Any, data_dir: str | None) -> str | None:
    """The data folder a benchmark reads: ``data_dir``, except that a benchmark with built-in data
    keeps it when ``data_dir`` holds nothing of its own (so ``--data-dir ../shared/data`` swaps in the
    real BLEnD files and keeps the built-in CountryRC passages)."""
    if data_dir is None or not benchmark.builtin:
        return data_dir
    root = Path(data_dir).expanduser()
    if (
        root.is_file()
        or any((root / m).exists() for m in benchmark.markers)
        or (benchmark.folder and (root / benchmark.folder).exists())
    ):
        return data_dir
    return None


# Keys added to [model] after run directories existed; left out of the fingerprint while unset, so
# that the steps of an older run keep their inputs hash and resume.
_NEW_MODEL_KEYS = ("revision",)


def model_fingerprint(model: Any) -> dict[str, Any]:
    """Identity of the configured model (the ``[model]`` section, a dataclass or mapping), with the
    size and mtime of its files when it is a local folder or file."""
    m = asdict(model) if is_dataclass(model) else dict(model)
    for key in _NEW_MODEL_KEYS:
        if m.get(key) is None:
            m.pop(key, None)
    path = Path(str(m.get("name", ""))).expanduser()
    if m.get("name") and path.exists():
        m["local_files"] = data_signature(path)
    return m
