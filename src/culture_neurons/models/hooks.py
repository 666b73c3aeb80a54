"""Hooks with an owner: every hook registered here is removed when its ``with`` block ends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from torch import nn


@contextlib.contextmanager
def forward_hooks(hooks: Iterable[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Register ``(module, hook)`` forward hooks for the duration of the block, exceptions included."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def frozen_for_attribution(model: nn.Module) -> Iterator[None]:
    """Freeze every parameter and switch to eval mode; restore flags and mode afterwards.

    Attribution needs gradients with respect to activations only, so no weight gradient is ever
    allocated. The embedding output is made to require grad so that backward reaches every site.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]

    def needs_grad(_module, _inputs, output):
        if not output.requires_grad:
            return output.detach().requires_grad_(True)
        return None

    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        with forward_hooks([(model.get_input_embeddings(), needs_grad)]):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
