"""Deterministic size caps on a list of examples: ``--max-per-group``, ``--limit``, ``--seed``.

One sampling rule for the command line and the pipeline config (``max_per_group``): every example
gets a sort key, the SHA-256 of its base question id (a control example is keyed like the question
it was made from, so a capped control set keeps the same questions as the capped original). The
first ``N`` examples of each group in key order are kept, then the first ``limit`` overall, and the
survivors come back in their input order. ``seed=0`` is the rule the pipeline has always used, so
existing run directories keep their samples; any other seed mixes into the hash and draws a
different, equally fixed sample.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..errors import InputError

F = TypeVar("F", bound=Callable[..., Any])


def sample_key(example: Any, seed: int = 0) -> str:
    """The sort key of one example under ``seed`` (hex SHA-256 of its base question id)."""
    base = example.meta.get("control_of") or example.id.split("#", 1)[0]
    text = str(base) if seed == 0 else f"{seed}\x00{base}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_cap(name: str, value: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InputError(f"{name} must be an integer, 0 or more (0 = no cap), got {value!r}")


def cap_examples(
    examples: Sequence[Any], *, max_per_group: int | None = None, limit: int | None = None, seed: int = 0
) -> list[Any]:
    """At most ``max_per_group`` examples per group and ``limit`` in all, in input order.

    Args:
        examples: :class:`~culture_neurons.data.example.Example` records (anything with ``id``,
            ``group`` and ``meta``).
        max_per_group: per-group cap; ``None`` or 0 keeps every example of each group.
        limit: total cap applied after the per-group cap; ``None`` or 0 keeps all.
        seed: which fixed sample to draw; 0 is the pipeline's historical sample.

    Returns:
        The kept examples, in the order they came in.
    """
    _check_cap("max_per_group", max_per_group)
    _check_cap("limit", limit)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if not max_per_group and not limit:
        return list(examples)
    keys = [sample_key(ex, seed) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: (keys[i], i))
    taken: dict[str, int] = {}
    keep: list[int] = []
    for i in order:
        group = examples[i].group
        if max_per_group and taken.get(group, 0) >= max_per_group:
            continue
        taken[group] = taken.get(group, 0) + 1
        keep.append(i)
    if limit:
        keep = keep[:limit]
    kept = set(keep)
    return [ex for i, ex in enumerate(examples) if i in kept]


@dataclass(frozen=True)
class Caps:
    """The three cap settings as one value (see :func:`cap_examples`)."""

    max_per_group: int | None = None
    limit: int | None = None
    seed: int = 0

    def apply(self, examples: Sequence[Any]) -> list[Any]:
        """:func:`cap_examples` with these settings."""
        return cap_examples(examples, max_per_group=self.max_per_group, limit=self.limit, seed=self.seed)


def cap_options(func: F) -> F:
    """Click decorator adding ``--max-per-group N``, ``--limit N`` and ``--seed N``.

    The command receives ``max_per_group``, ``limit`` (``None`` when not given) and ``seed``
    (default 0) and passes them to :func:`cap_examples`. A command whose signature has a ``caps``
    parameter instead receives them as one :class:`Caps` (fewer parameters for long commands).
    """
    if "caps" in inspect.signature(func).parameters:
        inner = func

        @functools.wraps(inner)
        def func(*args: Any, max_per_group: int | None, limit: int | None, seed: int, **kwargs: Any) -> Any:
            return inner(*args, caps=Caps(max_per_group, limit, seed), **kwargs)

    func = click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        metavar="N",
        help="Which fixed sample the caps draw (0 = the pipeline's sample).",
    )(func)
    func = click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Keep at most N examples in all (a fixed hash-ordered choice; 0 = all).",
    )(func)
    func = click.option(
        "--max-per-group",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Keep at most N examples per group/country (same rule as the config's max_per_group; 0 = all).",
    )(func)
    return func
