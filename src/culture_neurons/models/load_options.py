"""How a command loads its model: :class:`LoadOptions` (the ``from_pretrained`` conventions) and the
click options that fill it (``--dtype``, ``--device``, ``--device-map``, ``--max-memory``, ``--revision``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

DTYPES = ("float32", "bfloat16", "float16", "auto")
# The keys and units accelerate's ``max_memory`` takes (``get_max_memory``, ``convert_file_size_to_int``).
MEMORY_DEVICES = ("cpu", "disk", "mps")
MEMORY_UNITS = ("GiB", "MiB", "KiB", "GB", "MB", "KB")
_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?\s*(" + "|".join(MEMORY_UNITS) + ")", re.ASCII | re.IGNORECASE)
MAX_MEMORY_FORM = (
    "comma-separated DEVICE=SIZE pairs, DEVICE a GPU index or one of cpu, disk, mps and SIZE a number "
    "with a unit (GiB, MiB, KiB, GB, MB, KB), e.g. 0=70GiB,cpu=200GiB"
)


def check_max_memory(text: str) -> dict[int | str, str]:
    """``"0=70GiB,cpu=200GiB"`` as ``{0: "70GiB", "cpu": "200GiB"}``, every pair checked.

    Raises:
        InputError: a pair that is not ``DEVICE=SIZE``, an unknown device, a device given twice, a size
            without a unit, or no pair at all; the message says what is accepted.
    """
    out: dict[int | str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, size = (s.strip() for s in part.partition("="))
        device: int | str = int(key) if key.isascii() and key.isdigit() else key.lower()
        if not sep or (isinstance(device, str) and device not in MEMORY_DEVICES) or not _SIZE.fullmatch(size):
            raise InputError(f"{part!r} is not DEVICE=SIZE; give {MAX_MEMORY_FORM}")
        if device in out:
            raise InputError(f"device {key!r} is given twice; give each device once")
        out[device] = size
    if not out:
        raise InputError(f"no DEVICE=SIZE pair in {text!r}; give {MAX_MEMORY_FORM}")
    return out


def _max_memory_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Checked while the command line is parsed, so a typo fails before a model starts loading.
    if value is not None:
        try:
            check_max_memory(value)
        except InputError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


@dataclass(frozen=True)
class LoadOptions:
    """The placement and version arguments of :func:`~culture_neurons.models.loading.load_model`.

    Attributes:
        dtype: ``float32``, ``bfloat16`` or ``float16`` (default: bfloat16 on CUDA, else float32).
        device: where the whole model goes (default: CUDA when available); ignored with ``device_map``.
        device_map: ``from_pretrained``'s ``device_map`` (e.g. ``"auto"`` to shard a large model).
        max_memory: per-device limits for ``device_map`` (``"0=70GiB,cpu=200GiB"`` or a dict).
        revision: hub branch, tag or commit of the model and its tokenizer.
    """

    dtype: str | None = None
    device: str | None = None
    device_map: str | None = None
    max_memory: str | dict | None = None
    revision: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """These options as :func:`load_model` keyword arguments."""
        return {
            "dtype": self.dtype,
            "device": self.device,
            "device_map": self.device_map,
            "max_memory": self.max_memory,
            "revision": self.revision,
        }


def load_options(func: F) -> F:
    """Click decorator adding the model-loading options; the command receives them as ``load: LoadOptions``."""
    inner = func

    @functools.wraps(inner)
    def wrapper(*args: Any, dtype: Any, device: Any, device_map: Any, max_memory: Any, revision: Any, **kw: Any) -> Any:
        return inner(*args, load=LoadOptions(dtype, device, device_map, max_memory, revision), **kw)

    options = [
        click.option(
            "--dtype",
            type=click.Choice(DTYPES),
            default=None,
            help="Default: bfloat16 on CUDA, else float32; auto: also bfloat16 on a CPU with AMX or AVX-512 BF16.",
        ),
        click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)."),
        click.option("--device-map", default=None, help="Shard a large model, e.g. 'auto' (overrides --device)."),
        click.option(
            "--max-memory",
            default=None,
            callback=_max_memory_option,
            metavar="DEVICE=SIZE,...",
            help="Per-device limits with --device-map, e.g. '0=70GiB,1=70GiB,cpu=200GiB'.",
        ),
        click.option("--revision", default=None, help="Hub branch, tag or commit of the model (hub ids only)."),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated
