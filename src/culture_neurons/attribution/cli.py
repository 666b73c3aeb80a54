"""``culture-neurons score``."""

from __future__ import annotations

import time

import click

from ..data.sampling import cap_options
from ..errors import InputError
from .engine import AGGREGATIONS, TARGETS


def parse_sites(text: str | None) -> tuple[str, ...] | None:
    """``--sites`` as a tuple; None (all sites) when not given. Empty or repeated names are errors."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise InputError(
            f"--sites {text!r}: empty site name; give a comma-separated list such as mlp.act,attn.o, "
            "or omit --sites for all"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--sites {text!r}: site {repeated[0]!r} is given twice")
    return tuple(names)


def report(table, out, start: float) -> None:
    """The lines ``score`` prints: what was written, the mean target probability, and a chance warning.

    A control set (``--control``, the question removed) is expected to sit at chance, so it gets no warning.
    """
    from ..chance import chance_warning, score_fix

    probs = table.mean_prob()
    mean_p = sum(float(s) for s in table.prob_sums) / max(table.num_examples, 1)
    sites = ", ".join(f"{s}[{table.num_layers}x{w}]" for s, w in table.widths.items())
    click.echo(f"wrote {out}: {table.num_examples} examples, {len(table.groups)} groups, sites {sites}")
    shown = ", ".join(f"{g} {p:.3f}" for g, p in list(probs.items())[:8])
    click.echo(
        f"mean target probability {mean_p:.4f} ({shown}{' ...' if len(probs) > 8 else ''}); "
        f"{time.perf_counter() - start:.1f} s"
    )
    chance = table.meta.get("chance_level")
    if chance is not None and not table.options.get("control"):
        target = str(table.options.get("target"))
        warning = chance_warning(
            f"mean target probability ({target} target)", mean_p, float(chance), table.num_examples, score_fix(target)
        )
        if warning:
            click.echo(warning, err=True)


@click.command()
@click.option(
    "--model", "-m", required=True, help="Hub id, local folder, .gguf file, or alias (smollm2-135m-instruct)."
)
@click.option(
    "--examples",
    "-e",
    required=True,
    type=click.Path(dir_okay=False),
    help="Examples JSONL (id, prompt, answer, group).",
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output ScoreTable (.safetensors).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Default: bfloat16 on CUDA, else float32.",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available).")
@click.option("--device-map", default=None, help="Shard a large model, e.g. 'auto' (overrides --device).")
@click.option(
    "--max-memory", default=None, help="Per-device limits with --device-map, e.g. '0=70GiB,1=70GiB,cpu=200GiB'."
)
@click.option("--target", type=click.Choice(TARGETS), default="label", show_default=True, help="What p is.")
@click.option(
    "--aggregation", type=click.Choice(AGGREGATIONS), default="max", show_default=True, help="Reduction over positions."
)
@click.option("--control", is_flag=True, help="Control set: clamp example scores at 0.")
@click.option("--reference-compat", is_flag=True, help="Zero-filled padding, to match the reference code's numbers.")
@click.option("--padding-side", type=click.Choice(["left", "right"]), default="left", show_default=True)
@click.option("--no-chat-template", is_flag=True, help="Use prompts as they are, without the chat template.")
@click.option(
    "--site-map",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TOML/JSON site map for an unknown architecture.",
)
@click.option("--sites", default=None, help="Comma-separated subset of sites to score (default: all).")
@click.option(
    "--checkpoint-every",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Save progress to OUT.ckpt every N batches (0: never); a rerun resumes.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@cap_options
def score(
    model,
    examples,
    out,
    batch_size,
    dtype,
    device,
    device_map,
    max_memory,
    target,
    aggregation,
    control,
    reference_compat,
    padding_side,
    no_chat_template,
    site_map,
    sites,
    checkpoint_every,
    quiet,
    max_per_group,
    limit,
    seed,
) -> None:
    """Score every neuron on EXAMPLES and write a ScoreTable."""
    from .api import score_file

    start = time.perf_counter()
    table = score_file(
        model,
        examples,
        out,
        dtype=dtype,
        device=device,
        device_map=device_map,
        max_memory=max_memory,
        site_map=site_map,
        progress=not quiet,
        checkpoint_every=checkpoint_every,
        max_per_group=max_per_group,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        target=target,
        aggregation=aggregation,
        control=control,
        reference_compat=reference_compat,
        padding_side=padding_side,
        chat_template=not no_chat_template,
        sites=parse_sites(sites),
    )
    from ..distributed import is_main

    if not is_main():
        return
    report(table, out, start)
