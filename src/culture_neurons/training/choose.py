"""Module sets for selective fine-tuning: ``top``, ``bottom``, ``random``, ``full`` or named modules.

:func:`choose_modules` turns a :class:`~.modules.ModuleRanking` into a :class:`~.modules.ModuleSet`:
the named sets are filled greedily up to a parameter budget (see :mod:`.modules` for the orders);
an explicit list such as ``mlp.3,attn.5`` and ``full`` ignore the budget.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..errors import InputError
from .modules import DEFAULT_BUDGET, KINDS, NAMED_SETS, Module, ModuleRanking, ModuleSet


def check_budget(budget: float) -> float:
    """``budget`` as a float in (0, 1]; :class:`InputError` otherwise."""
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise InputError(f"budget must be a fraction of the model's parameters in (0, 1], got {budget!r}") from None
    if not 0.0 < budget <= 1.0:
        raise InputError(
            f"budget must be a fraction of the model's parameters in (0, 1], got {budget:g}; e.g. 0.1 for 10%"
        )
    return budget


def fill_budget(candidates: Sequence[Module], budget_params: int) -> list[Module]:
    """Walk ``candidates`` in order and take every module that still fits in ``budget_params``."""
    chosen, used = [], 0
    for m in candidates:
        if used + m.params <= budget_params:
            chosen.append(m)
            used += m.params
    return chosen


def parse_module_spec(spec: str | Sequence[str]) -> list[str]:
    """``"mlp.3, attn.5"`` or a list of names -> ``["mlp.3", "attn.5"]`` (no de-duplication yet)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [str(s).strip() for s in items if str(s).strip()]


def choose_modules(
    ranking: ModuleRanking, which: str | Sequence[str], budget: float = DEFAULT_BUDGET, seed: int = 42
) -> ModuleSet:
    """The module set ``which`` (``top``, ``bottom``, ``random``, ``full`` or module names) under ``budget``.

    ``budget`` is a fraction of the model's parameters; explicit module lists and ``full`` ignore it.
    Raises :class:`InputError` for a budget outside (0, 1], an unknown module name, or a set that
    would be empty (no module holds a neuron, none is neuron-free, or none fits the budget).
    """
    total = ranking.total_params
    names = [which] if isinstance(which, str) and which.strip() in NAMED_SETS else parse_module_spec(which)
    if not names:
        raise InputError(
            "the module set is empty; give top, bottom, random, full, or module names such as mlp.3,attn.5"
        )
    if len(names) == 1 and names[0] == "full":
        return ModuleSet("full", tuple(ranking.modules), total, None, total, full=True)
    if len(names) == 1 and names[0] in NAMED_SETS:
        kind = names[0]
        budget = check_budget(budget)
        budget_params = int(budget * total)
        if kind == "top":
            candidates = [m for m in ranking.modules if m.neurons > 0]
            if not candidates:
                raise InputError(
                    f"no module holds a neuron of NeuronSet {ranking.neuron_set!r}, so the top set is empty; "
                    "is the set empty?"
                )
        elif kind == "bottom":
            candidates = [m for m in ranking.modules if m.neurons == 0]
            random.Random(seed).shuffle(candidates)
            if not candidates:
                raise InputError(
                    f"every module holds a neuron of NeuronSet {ranking.neuron_set!r}, so the bottom set is empty"
                )
        else:
            candidates = list(ranking.modules)
            random.Random(seed).shuffle(candidates)
        chosen = fill_budget(candidates, budget_params)
        if not chosen:
            smallest = min(candidates, key=lambda m: m.params)
            raise InputError(
                f"the {kind} set is empty: a budget of {budget:g} ({budget_params:,} of {total:,} parameters) "
                f"is smaller than the smallest candidate module ({smallest.name}, {smallest.params:,} parameters); "
                "raise the budget"
            )
        return ModuleSet(
            kind,
            tuple(chosen),
            sum(m.params for m in chosen),
            budget_params,
            total,
            seed=None if kind == "top" else seed,
        )
    known = ranking.by_name()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"unknown module(s) {', '.join(unknown)}; modules are named kind.layer, e.g. mlp.0 ... "
            f"mlp.{max(m.layer for m in ranking.modules)} and attn.0 ..., or use top, bottom, random, full"
        )
    chosen = [known[n] for n in dict.fromkeys(names)]
    chosen.sort(key=lambda m: (m.layer, KINDS.index(m.kind)))
    return ModuleSet("custom", tuple(chosen), sum(m.params for m in chosen), None, total)
