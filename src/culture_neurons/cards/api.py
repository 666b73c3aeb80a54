"""Neuron cards from Python: :func:`neuron_cards` on a model and examples, :func:`cards_from_run` on a run directory.

Both return a :class:`~.card.CardSet` (iterate it for :class:`~.card.NeuronCard` objects; ``.frame()`` is a
pandas DataFrame, ``.write(path)`` the ``cards.jsonl`` file). Cost: one forward pass over the examples
(batched like scoring, stopped at the deepest chosen layer) and one matrix product per layer for the
logit lens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..attribution.batching import target_rows
from ..data.example import Example
from ..errors import CultureNeuronsError, InputError
from ..intervention.intervene import check_fits
from ..models.adapters import ModelAdapter, get_adapter
from ..selection.neuronset import Neuron, NeuronSet
from .activations import capture
from .build import CardContext, build_cards
from .card import SOURCES, CardSet
from .lens import logit_lens
from .neurons import NeuronRef, check_neurons, parse_neuron, refs_of
from .options import CardOptions
from .sources import (
    attributions,
    find_set,
    memberships,
    read_manifest,
    run_examples,
    run_sets,
    top_refs,
    validity_facts,
)

Neurons = NeuronSet | Sequence[NeuronRef | Neuron | tuple[str, int, int] | str]


def _by_source(examples: Sequence[Example] | Mapping[str, Sequence[Example]]) -> tuple[list[Example], list[str]]:
    if isinstance(examples, Mapping):
        unknown = [k for k in examples if k not in SOURCES]
        if unknown:
            raise InputError(f"example source(s) {unknown} unknown; use {', '.join(SOURCES)}")
        pairs = [(ex, source) for source in SOURCES for ex in examples.get(source, ())]
    else:
        pairs = [(ex, "identification") for ex in examples]
    if not pairs:
        raise InputError("neuron cards need at least one example")
    return [p[0] for p in pairs], [p[1] for p in pairs]


def neuron_cards(
    model: Any,
    tokenizer: Any,
    neurons: Neurons,
    examples: Sequence[Example] | Mapping[str, Sequence[Example]],
    *,
    options: CardOptions | None = None,
    target: str = "label",
    chat_template: bool = True,
    sets: Mapping[str, NeuronSet] | None = None,
    context: CardContext | None = None,
    adapter: ModelAdapter | None = None,
    progress: Callable[[int], None] | None = None,
) -> CardSet:
    """One card per neuron, from one pass over ``examples``.

    Args:
        neurons: a NeuronSet, or neurons as :class:`NeuronRef`, :class:`Neuron`, ``(site, layer, index)`` or
            ``"SITE:LAYER:INDEX"``.
        examples: a list (all counted as identification, i.e. culture, examples) or ``{"identification": ...,
            "control": ..., "nlu": ...}``.
        target, chat_template: the scoring run's, so activations are read at the positions scoring used.
        sets: the sets whose ranks the cards show (default: ``neurons`` when it is a NeuronSet).
        context: validity frequencies, effects and country scores (:class:`CardContext`); default: the ranks
            in ``sets`` only.

    Raises:
        InputError: a neuron outside the model, or a set selected on another model.
    """
    options = options or CardOptions()
    options.check()
    adapter = adapter or get_adapter(model)
    if sets is None and isinstance(neurons, NeuronSet):
        sets = {neurons.kind.removeprefix("stable:"): neurons}
    for ns in (sets or {}).values():
        check_fits(ns, adapter, model)
    refs = refs_of(neurons)
    if not refs:
        raise InputError("no neurons to make cards for")
    check_neurons(refs, adapter)
    exs, sources = _by_source(examples)
    if context is None:
        context = CardContext(memberships=memberships(sets or {}))
    lenses = logit_lens(model, tokenizer, refs, adapter=adapter, k=options.top_tokens)
    captured = capture(
        model,
        tokenizer,
        exs,
        refs,
        adapter=adapter,
        target=target,
        chat_template=chat_template,
        batch_size=options.batch_size,
        top_k=options.top_examples,
        shared_prefix=options.shared_prefix,
        prefix_groups=[(source, ex.dataset, ex.template_id) for ex, source in zip(exs, sources)],
        progress=progress,
    )
    return CardSet(build_cards(captured, lenses, exs, sources, tokenizer, context, options.bins))


def scorable(tokenizer: Any, examples: Sequence[Example], target: str, chat_template: bool) -> list[Example]:
    """The examples whose rows the scoring target can build (an NLU item scoring never saw may not fit it:
    an answer that merges with the prompt's last token, no options for ``choice``)."""
    if not examples:
        return []
    try:
        target_rows(tokenizer, examples, target, chat_template)
        return list(examples)
    except CultureNeuronsError:
        pass
    kept = []
    for ex in examples:
        try:
            target_rows(tokenizer, [ex], target, chat_template)
        except CultureNeuronsError:
            continue
        kept.append(ex)
    return kept


def run_options(manifest: Mapping[str, Any]) -> CardOptions:
    """The run's ``[cards]`` values as :class:`CardOptions` (the defaults where the run has none)."""
    section = (manifest.get("config") or {}).get("cards") or {}
    names = {f.name for f in fields(CardOptions)}
    return CardOptions(**{k: v for k, v in section.items() if k in names})


def choose_neurons(
    sets: Mapping[str, NeuronSet], set_name: str | None, neurons: Sequence[str | NeuronRef] | None, top: int
) -> list[NeuronRef]:
    """The neurons a run's cards are for: ``neurons`` as given; else the ``top`` of set ``set_name`` (0: all of
    it); else the ``top`` of every set."""
    if neurons:
        return [n if isinstance(n, NeuronRef) else parse_neuron(n) for n in neurons]
    if set_name is not None:
        ns = find_set(sets, set_name)
        name = next(k for k, v in sets.items() if v is ns)
        return refs_of(ns) if top == 0 else top_refs({name: ns}, top)
    if not sets:
        raise InputError("this run has no general or culture-specific set (run the select stage), so no top neurons")
    return top_refs(sets, top)


def cards_from_run(
    run_dir: str | Path,
    *,
    set_name: str | None = None,
    neurons: Sequence[str | NeuronRef] | None = None,
    top: int | None = None,
    model: Any = None,
    tokenizer: Any = None,
    options: CardOptions | None = None,
    manifest: Mapping[str, Any] | None = None,
    load: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> CardSet:
    """Cards for neurons of a run, from the run's own examples, sets, score tables and validity files.

    Args:
        set_name: one set (``general``, ``specific:Japan`` or ``Japan``): its ``top`` neurons.
        neurons: these neurons (``"mlp.gate:3:117"``), whatever sets hold them.
        top: neurons per set (per pool of the general set); default the run's ``[cards] top``.
        model, tokenizer: the run's model, already loaded (default: loaded from the run's ``[model]``).
        options: default the run's ``[cards]`` section.
        load: keyword arguments for ``load_model`` when it loads the model (``device``, ``dtype``).
    """
    run_dir = Path(run_dir)
    manifest = manifest if manifest is not None else read_manifest(run_dir)
    config = manifest.get("config") or {}
    options = options or run_options(manifest)
    options.check()
    sets = run_sets(run_dir)
    refs = choose_neurons(sets, set_name, neurons, options.top if top is None else top)
    if not refs:  # the sets are empty: nothing to describe
        return CardSet([])
    model_config = config.get("model") or {}
    if model is None:
        from ..models.loading import load_model  # transformers: only when the run's model is needed

        args = {k: model_config.get(k) for k in ("dtype", "device", "device_map", "max_memory", "revision")}
        args.update({k: v for k, v in (load or {}).items() if v is not None})
        model, tokenizer = load_model(model_config["name"], progress=False, **args)
    adapter = get_adapter(model, model_config.get("site_map"))
    check_neurons(refs, adapter)  # before the tables are read at these indices
    examples, sources = run_examples(run_dir, manifest, options.max_per_group, options.nlu_limit)
    facts = validity_facts(run_dir)
    context = CardContext(
        memberships=memberships(sets),
        frequency={ref: facts.frequency(ref) for ref in refs},
        effects=facts.effects,
        attribution=attributions(run_dir, manifest, refs),
    )
    target = (config.get("score") or {}).get("target", "label")
    chat_template = (config.get("data") or {}).get("chat_template", True)
    grouped: dict[str, list[Example]] = {s: [] for s in SOURCES}
    for ex, source in zip(examples, sources):
        grouped[source].append(ex)
    grouped["nlu"] = scorable(tokenizer, grouped["nlu"], target, chat_template)
    return neuron_cards(
        model,
        tokenizer,
        refs,
        grouped,
        options=options,
        target=target,
        chat_template=chat_template,
        sets=sets,
        context=context,
        adapter=adapter,
        progress=progress,
    )
