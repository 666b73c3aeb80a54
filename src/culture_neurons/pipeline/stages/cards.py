"""The ``cards`` stage: a neuron card for the top neurons of every set, into ``neurons/cards.jsonl``.

One forward pass over the run's identification, control and NLU examples (capped by ``[cards]``) and
one logit-lens product per layer; it reads the sets, the score tables and, when the validity stage ran,
its fold sets and single-neuron effects. The report shows the cards.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import rundir
from ...cards.api import cards_from_run
from ..runner import Context, Stage

# The steps whose files a card reads: the examples, the score tables, the sets, the validity files.
_READS = ("export", "score", "select", "validate")


def run(ctx: Context) -> None:
    config = ctx.config
    if not (config.select.general.enabled or config.select.specific.enabled):
        ctx.echo("[cards] no neuron set is selected ([select.general] and [select.specific] are off): no cards")
        return
    section = config.cards

    def make() -> tuple[list[Path], dict[str, Any]]:
        model, tokenizer = ctx.model()
        bar = ctx.bar(None, "cards")
        try:
            cards = cards_from_run(
                ctx.run_dir,
                model=model,
                tokenizer=tokenizer,
                options=section.options(),
                manifest=ctx.manifest.data,
                progress=bar.update,
            )
        finally:
            bar.close()
        path = cards.write(ctx.run_dir / rundir.CARDS_REL)
        counted = cards[0].sources if len(cards) else ()
        return [path], {"cards": len(cards), "examples": {s.source: s.n for s in counted}}

    inputs = {
        "cards": asdict(section.options()),
        "model": rundir.model_fingerprint(config.model),
        "target": config.score.target,
        "chat_template": config.data.chat_template,
    }
    depends = sorted(k for k in ctx.manifest.steps if rundir.stage_of_key(k) in _READS)
    result = ctx.step(rundir.CARDS_KEY, "cards", "neuron cards", inputs, make, depends=depends)
    ctx.log_stage("cards", f"{result.info.get('cards', 0)} cards" if result.info else "")


STAGE = Stage("cards", run, enabled=lambda config: config.runs("cards"))
