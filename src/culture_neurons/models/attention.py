"""The attention implementation a backward pass should run with.

On a CPU in bfloat16 or float16, torch's SDPA backward (its CPU flash-attention kernel) is far slower
than in float32: profiled on SmolLM2-135M-Instruct scoring 16 BLEnD questions on 2 cores with AMX,
it took 229 ms of a 726 ms pass in bfloat16 against 26 ms in float32, while the eager implementation's
matrix products run on the matrix units (its attention products took 27 ms). Gradient passes switch to
eager attention there; forward-only passes keep SDPA, whose CPU forward is fast in every dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .adapters import text_config

_HALF = (torch.bfloat16, torch.float16)


def _parameters_on_cpu_in_half(model: Any) -> bool:
    first = next(iter(model.parameters()), None)
    return first is not None and first.device.type == "cpu" and first.dtype in _HALF


@contextlib.contextmanager
def attention_for_backward(model: Any) -> Iterator[str | None]:
    """Run attention eagerly for the block when the model is SDPA in half precision on a CPU.

    Yields the implementation in force (``None`` when nothing was changed); the previous one is
    restored on exit, exceptions included. Eager and SDPA compute the same attention, so results
    agree to float rounding.
    """
    config = text_config(getattr(model, "config", None)) if getattr(model, "config", None) is not None else None
    current = getattr(config, "_attn_implementation", None)
    switch = current == "sdpa" and hasattr(model, "set_attn_implementation") and _parameters_on_cpu_in_half(model)
    if not switch:
        yield None
        return
    model.set_attn_implementation("eager")
    try:
        yield "eager"
    finally:
        model.set_attn_implementation(current)
