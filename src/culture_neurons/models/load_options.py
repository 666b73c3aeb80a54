"""How a command loads its model: :class:`LoadOptions` (the ``from_pretrained`` conventions) and the
click options that fill it (``--dtype``, ``--device``, ``--device-map``, ``--max-memory``, ``--revision``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DTYPES = ("float32", "bfloat16", "float16")


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
        click.option("--dtype", type=click.Choice(DTYPES), default=None, help="Default: bfloat16 on CUDA, else fp32."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)."),
        click.option("--device-map", default=None, help="Shard a large model, e.g. 'auto' (overrides --device)."),
        click.option(
            "--max-memory", default=None, help="Per-device limits with --device-map, e.g. '0=70GiB,1=70GiB,cpu=200GiB'."
        ),
        click.option("--revision", default=None, help="Hub branch, tag or commit of the model (hub ids only)."),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated
