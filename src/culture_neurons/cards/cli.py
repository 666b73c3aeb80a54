"""``culture-neurons inspect``: neuron cards on the command line, from a run directory or explicit inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..models.load_options import LoadOptions, load_options
from ..rundir import CARDS_REL
from .api import cards_from_run, choose_neurons, neuron_cards, run_options
from .card import CardSet, read_cards
from .neurons import NeuronRef, parse_neuron, refs_of
from .options import CardOptions
from .render import shown, text_card
from .sources import read_manifest, run_sets

_COUNT = click.IntRange(min=0)


@dataclass(frozen=True)
class Request:
    """What ``inspect`` was asked for (its options, checked)."""

    run_dir: Path | None
    set_name: str | None
    neurons: tuple[NeuronRef, ...]
    top: int | None
    model_name: str | None
    neuron_spec: str | None
    files: dict[str, str | None]
    target: str
    chat_template: bool
    batch_size: int | None
    max_per_group: int | None

    @property
    def explicit(self) -> bool:
        return self.model_name is not None or self.neuron_spec is not None or self.files["identification"] is not None


def _neuron_spec(spec: str) -> Any:
    """``--neurons``: a NeuronSet file, or comma-separated ``SITE:LAYER:INDEX``."""
    from ..selection.neuronset import NeuronSet

    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise InputError(f"--neurons {spec}: no such NeuronSet file")
        return NeuronSet.load(path)
    return [parse_neuron(x) for x in spec.split(",") if x.strip()]


def _saved(req: Request) -> CardSet | None:
    """The run's saved cards for the request, when ``neurons/cards.jsonl`` holds every one of them."""
    path = req.run_dir / CARDS_REL
    if not path.is_file():
        return None
    saved = read_cards(path)
    if req.neurons:
        found = [saved.get(r) for r in req.neurons]
        return CardSet(found) if all(found) else None
    if req.set_name is None:
        return saved if req.top is None else None

    def rank(card) -> int | None:
        ranks = [m.rank for m in card.sets if req.set_name in (m.set, m.set.partition(":")[2])]
        return min(ranks) if ranks else None

    wanted = sorted((c for c in saved if rank(c) is not None), key=rank)
    top = run_options(read_manifest(req.run_dir)).top if req.top is None else req.top
    return CardSet(wanted[:top]) if wanted and 0 < top <= len(wanted) else None


def _explicit_cards(req: Request, load: LoadOptions) -> CardSet:
    from ..data.example import read_examples
    from ..models.loading import load_model

    missing = [o for o, v in (("--model", req.model_name), ("--neurons", req.neuron_spec)) if not v]
    if missing or not req.files["identification"]:
        missing += [] if req.files["identification"] else ["--examples"]
        raise InputError(f"explicit inputs need {', '.join(missing)} too (or give a RUN_DIR instead)")
    neurons = _neuron_spec(req.neuron_spec)
    examples = {source: read_examples(path) for source, path in req.files.items() if path}
    model, tokenizer = load_model(req.model_name, progress=False, **load.kwargs())
    options = CardOptions(**({"batch_size": req.batch_size} if req.batch_size else {}))
    return neuron_cards(
        model, tokenizer, neurons, examples, options=options, target=req.target, chat_template=req.chat_template
    )


def _run_cards(req: Request, load: LoadOptions) -> CardSet:
    manifest = read_manifest(req.run_dir)
    options = run_options(manifest)
    if req.batch_size:
        options.batch_size = req.batch_size
    if req.max_per_group is not None:
        options.max_per_group = req.max_per_group
    top = options.top if req.top is None else req.top
    choose_neurons(run_sets(req.run_dir), req.set_name, list(req.neurons), top)  # a bad name fails before loading
    return cards_from_run(
        req.run_dir,
        set_name=req.set_name,
        neurons=list(req.neurons),
        top=req.top,
        options=options,
        manifest=manifest,
        load=load.kwargs(),
    )


def lens_text(req: Request, load: LoadOptions, k: int = 10) -> str:
    """What each neuron writes, without examples or a forward pass (an error for a site without an output direction)."""
    from ..models.adapters import get_adapter
    from ..models.loading import load_model
    from .lens import logit_lens

    refs = list(req.neurons) + (refs_of(_neuron_spec(req.neuron_spec)) if req.neuron_spec else [])
    if not refs:
        raise InputError("--lens needs the neurons: --neuron SITE:LAYER:INDEX or --neurons")
    name, site_map = req.model_name, None
    if name is None:
        if req.run_dir is None:
            raise InputError("--lens needs RUN_DIR or --model")
        model_config = (read_manifest(req.run_dir).get("config") or {}).get("model") or {}
        name, site_map = model_config["name"], model_config.get("site_map")
    model, tokenizer = load_model(name, progress=False, **load.kwargs())
    lenses = logit_lens(model, tokenizer, refs, adapter=get_adapter(model, site_map), k=k, strict=True)
    lines = []
    for ref, lens in zip(refs, lenses):
        lines.append(f"{ref}: writes through {lens.through}")
        lines.append("  promotes:   " + "  ".join(f"'{shown(t.token)}' {t.logit:+.3g}" for t in lens.promoted))
        lines.append("  suppresses: " + "  ".join(f"'{shown(t.token)}' {t.logit:+.3g}" for t in lens.suppressed))
    return "\n".join(lines)


@click.command("inspect")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--set", "set_name", default=None, help="One set of the run: general, specific:Japan or Japan.")
@click.option("--neuron", "neurons", multiple=True, metavar="SITE:LAYER:INDEX", help="A neuron (repeatable).")
@click.option("--top", type=_COUNT, default=None, help="Neurons per set (per pool of the general set); 0: all.")
@click.option("--model", "model_name", default=None, help="Explicit inputs: the model (with --neurons, --examples).")
@click.option("--neurons", "neuron_spec", default=None, help="Explicit: a NeuronSet file or SITE:LAYER:INDEX,...")
@click.option("--examples", type=click.Path(dir_okay=False), default=None, help="Explicit: identification JSONL.")
@click.option("--control", type=click.Path(dir_okay=False), default=None, help="Explicit: control examples JSONL.")
@click.option("--nlu", type=click.Path(dir_okay=False), default=None, help="Explicit: NLU examples JSONL.")
@click.option("--target", type=click.Choice(["label", "answer", "choice"]), default="label", show_default=True)
@click.option("--chat-template/--no-chat-template", default=True, help="Explicit: as the scoring run did.")
@click.option("--lens", is_flag=True, help="Only what each neuron writes (no examples, no forward pass).")
@click.option("--recompute", is_flag=True, help="Recompute even when RUN_DIR/neurons/cards.jsonl holds the cards.")
@click.option("--examples-shown", type=_COUNT, default=3, show_default=True, help="Top examples per card; 0: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON lines instead.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write cards.jsonl.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Examples per forward pass.")
@click.option("--max-per-group", type=_COUNT, default=None, help="Run: identification/control examples per country.")
@load_options
def inspect(run_dir: Path | None, load: LoadOptions, **kw: Any) -> None:
    """Neuron cards: what each neuron writes, what makes it fire, whose culture, how often, what removing it does.

    \b
    culture-neurons inspect runs/demo                    # the cards the pipeline wrote (the top of every set)
    culture-neurons inspect runs/demo --set Japan --top 3
    culture-neurons inspect runs/demo --neuron mlp.gate:3:117
    culture-neurons inspect runs/demo --neuron attn.v:2:40 --lens
    culture-neurons inspect --model M --neurons general.json --examples ident.jsonl --control control.jsonl
    """
    req = Request(
        run_dir,
        kw["set_name"],
        tuple(parse_neuron(n) for n in kw["neurons"]),
        kw["top"],
        kw["model_name"],
        kw["neuron_spec"],
        {"identification": kw["examples"], "control": kw["control"], "nlu": kw["nlu"]},
        kw["target"],
        kw["chat_template"],
        kw["batch_size"],
        kw["max_per_group"],
    )
    if req.explicit and run_dir is not None:
        raise InputError("give RUN_DIR or the explicit inputs (--model, --neurons, --examples), not both")
    if kw["lens"]:
        click.echo(lens_text(req, load))
        return
    if req.explicit:
        cards = _explicit_cards(req, load)
    elif run_dir is None:
        raise InputError("give a RUN_DIR, or --model, --neurons and --examples")
    else:
        cards = None if kw["recompute"] else _saved(req)
        cards = cards if cards is not None else _run_cards(req, load)
    if kw["out"] is not None:
        cards.write(kw["out"])
    for card in cards:
        if kw["as_json"]:
            click.echo(json.dumps(card.to_dict(), ensure_ascii=False))
        else:
            click.echo(text_card(card, kw["examples_shown"]) + "\n")
