"""``culture-neurons score``."""

from __future__ import annotations

import time

import click

from ..data.sampling import Caps, cap_options
from ..errors import InputError
from ..models.load_options import LoadOptions, load_options
from .methods import METHOD_NAMES
from .methods.rules import RULES
from .options import AGGREGATIONS, IG_BASELINES, TARGETS


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


METHOD_FIELDS = ("method", "ig_steps", "ig_rule", "ig_baseline")


def method_options() -> list:
    """The click options of the scoring method (``ScoringOptions.method`` and the ``ig_*`` fields)."""
    return [
        click.option(
            "--method",
            type=click.Choice(METHOD_NAMES),
            default="gxa",
            show_default=True,
            help="gxa: activation x gradient (the paper's). atp-mean: (activation - mean activation) x gradient, "
            "the linear estimate of mean ablation (same cost as gxa). ig: integrated gradients of one site "
            "at a time, about sites x layers x --ig-steps passes per example (for samples and small models). "
            "ig-joint: every site interpolated together, --ig-steps passes per example. All are reduced "
            "like gxa (p x max over positions, per group); see docs/methods.md.",
        ),
        click.option(
            "--ig-steps",
            default=32,
            show_default=True,
            type=click.IntRange(min=1),
            help="Integration steps of ig/ig-joint, run as one batched pass.",
        ),
        click.option(
            "--ig-rule",
            type=click.Choice(RULES),
            default="gausslegendre",
            show_default=True,
            help="Quadrature rule of ig/ig-joint (captum's names; gausslegendre is captum's default).",
        ),
        click.option(
            "--ig-baseline",
            type=click.Choice(IG_BASELINES),
            default="zero",
            show_default=True,
            help="Where ig/ig-joint's path starts: zero (suppression) or mean (each channel's mean activation "
            "over the scored examples' prompts: mean ablation).",
        ),
    ]


def scoring_options(func):
    """Click decorator adding the :class:`ScoringOptions` options; the command receives them as one
    ``options`` dict of ScoringOptions fields (``--no-chat-template`` becomes ``chat_template``)."""
    import functools

    names = ("batch_size", "target", "aggregation", "control", "reference_compat", "padding_side", "sites", "recompute")
    names += METHOD_FIELDS

    @functools.wraps(func)
    def wrapper(*args, no_chat_template, **kw):
        options = {name: kw.pop(name) for name in names}
        options["chat_template"] = not no_chat_template
        options["sites"] = parse_sites(options["sites"])
        return func(*args, options=options, **kw)

    for option in reversed(
        [
            click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1)),
            click.option("--target", type=click.Choice(TARGETS), default="label", show_default=True, help="What p is."),
            click.option(
                "--aggregation",
                type=click.Choice(AGGREGATIONS),
                default="max",
                show_default=True,
                help="Reduction over positions.",
            ),
            click.option("--control", is_flag=True, help="Control set: clamp example scores at 0."),
            click.option(
                "--reference-compat", is_flag=True, help="Zero-filled padding, to match the reference code's numbers."
            ),
            click.option("--padding-side", type=click.Choice(["left", "right"]), default="left", show_default=True),
            click.option("--no-chat-template", is_flag=True, help="Use prompts as they are, without a chat template."),
            click.option("--sites", default=None, help="Comma-separated subset of sites to score (default: all)."),
            click.option(
                "--recompute",
                is_flag=True,
                help="Less memory for more time: each layer runs again in the backward pass (same scores; not ig).",
            ),
            *method_options(),
        ]
    ):
        wrapper = option(wrapper)
    return wrapper


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
@scoring_options
@load_options
@click.option(
    "--site-map",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TOML/JSON site map for an unknown architecture.",
)
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
    model: str,
    examples: str,
    out: str,
    options: dict,
    load: LoadOptions,
    site_map: str | None,
    checkpoint_every: int,
    quiet: bool,
    caps: Caps,
) -> None:
    """Score every neuron on EXAMPLES and write a ScoreTable."""
    from .api import score_file

    start = time.perf_counter()
    table = score_file(
        model,
        examples,
        out,
        load=load,
        site_map=site_map,
        progress=not quiet,
        checkpoint_every=checkpoint_every,
        caps=caps,
        **options,
    )
    from ..distributed import is_main, leave

    if is_main():
        report(table, out, start)
    leave()
