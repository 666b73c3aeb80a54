"""Hooks with an owner: every hook registered here is removed when its ``with`` block ends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from torch import nn

from .attention import attention_for_backward


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
def forwards_replaced(replacements: Iterable[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Set each ``(module, forward)``'s ``module.forward`` for the duration of the block, exceptions included;
    afterwards a module has its own instance ``forward`` back, or none (its class's) when it had none."""
    patched: list[tuple[nn.Module, Callable | None]] = []
    try:
        for module, forward in replacements:
            patched.append((module, module.__dict__.get("forward")))
            module.forward = forward
        yield
    finally:
        for module, own in reversed(patched):
            if own is None:
                del module.forward
            else:
                module.forward = own


@contextlib.contextmanager
def frozen_for_attribution(model: nn.Module) -> Iterator[None]:
    """Freeze every parameter and switch to eval mode; restore flags and mode afterwards.

    Attribution needs gradients with respect to activations only, so no weight gradient is ever
    allocated. The embedding output is made to require grad so that backward reaches every site.
    Attention runs eagerly in half precision on a CPU, where SDPA's backward is slow
    (:func:`~.attention.attention_for_backward`).
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
        with attention_for_backward(model), forward_hooks([(model.get_input_embeddings(), needs_grad)]):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def recomputed_layers(layers: Iterable[nn.Module], recomputing: Callable[[bool], None]) -> Iterator[None]:
    """Run every layer under activation checkpointing for the duration of the block.

    A layer's forward keeps only its inputs; when the backward pass reaches it, it runs again to
    rebuild what its backward needs (``torch.utils.checkpoint``, non-reentrant, without early stop so
    every forward hook inside fires again). ``recomputing(True)`` is called before such a second run
    and ``recomputing(False)`` after it, so hooks can tell the two apart. The layers must not update a
    KV cache (it would be updated twice).
    """
    from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

    def wrap(forward: Callable) -> Callable:
        def run(*args, **kwargs):
            calls = 0

            def body(*a, **k):
                nonlocal calls
                calls += 1
                if calls == 1:
                    return forward(*a, **k)
                recomputing(True)
                try:
                    return forward(*a, **k)
                finally:
                    recomputing(False)

            return checkpoint(body, *args, use_reentrant=False, **kwargs)

        return run

    with forwards_replaced((layer, wrap(layer.forward)) for layer in layers), set_checkpoint_early_stop(False):
        yield
