"""``culture-neurons ablate`` and ``cross-culture``, and the benchmark part of ``evaluate``: thin layers over the
evaluation API (``evaluate`` with its lm-eval options is put together in
:mod:`culture_neurons.integrations.evaluate_command`).

Every input and option is checked before the model loads (:mod:`.inputs`); the output folder
appears only when the results are written, and a failed write removes what it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cli_options import (
    baseline_warnings,
    check_inputs,
    common_options,
    eval_bar,
    eval_opts,
    load_for_eval,
    parse_factor_option,
    save_result,
)
from .scorers import EvalOptions


def evaluate_options(fn):
    """The options of ``evaluate`` that need no lm-eval: the shared ones and ``--neurons``. The command
    itself, with its ``--lm-eval-*`` options, is assembled in
    :mod:`culture_neurons.integrations.evaluate_command`, the layer that may import both."""
    fn = click.option(
        "--neurons",
        "neurons",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="NeuronSet JSON to intervene on; repeat to combine.",
    )(fn)
    return common_options(fn)


def evaluate_benchmarks(neurons, kw) -> None:
    """``evaluate`` on the ``--bench`` files: the model as it is, or with NEURONS suppressed, enhanced
    or mean-ablated; prints the results and writes the output folder."""
    from .api import evaluate as run

    (factor,) = parse_factor_option(kw, sweep_ok=False)
    inputs = check_inputs(kw, neurons)
    model, tokenizer = load_for_eval(kw, inputs, inputs.sets)
    bar = eval_bar(kw, inputs, 1)
    with bar:
        result = run(
            model,
            tokenizer,
            inputs.benchmarks,
            inputs.sets or None,
            kw["op"],
            factor,
            options=EvalOptions(**eval_opts(kw)),
            n_boot=kw["n_boot"],
            progress=bar,
            site_map=kw["site_map"],
            means=inputs.means,
        )
    result.config.update(
        {
            "model": str(kw["model"]),
            "benchmarks": [str(b) for b in kw["benches"]],
            "neuron_files": [str(p) for p in neurons],
        }
    )
    if not save_result(result, kw, inputs):
        return
    from .display import evaluation_lines

    for line in evaluation_lines(result.summary):
        click.echo(line)
    click.echo(f"wrote {kw['out']}")


@click.command()
@common_options
@click.option(
    "--neurons", required=True, type=click.Path(dir_okay=False), help="The NeuronSet JSON (e.g. culture-general)."
)
@click.option("--seeds", type=click.IntRange(min=1), default=10, show_default=True, help="Random sets (seeds 0..N-1).")
@click.option("--layer-matched", is_flag=True, help="Random sets match the set's neurons per layer.")
def ablate(neurons, seeds, layer_matched, **kw) -> None:
    """Original vs NEURONS vs random sets of the same size (--op enhance: the enhancement experiment;
    --op enhance --factor 0,0.5,1.5,2,3: the factor sweep, a curve; --op mean: mean ablation)."""
    from ..selection.randomsets import RandomBaseline
    from .display import ablation_lines, curve_lines
    from .experiments import run_ablation
    from .sweep import VariantOptions, run_variants, variant_conditions

    factors = parse_factor_option(kw, sweep_ok=True)
    inputs = check_inputs(kw, [neurons])
    ns = inputs.sets[0]
    model, tokenizer = load_for_eval(kw, inputs, [ns])
    common: dict[str, Any] = {
        "random": RandomBaseline(seeds, layer_matched),
        "n_boot": kw["n_boot"],
        "site_map": kw["site_map"],
        "options": EvalOptions(**eval_opts(kw)),
    }
    with eval_bar(kw, inputs, variant_conditions(len(factors), seeds)) as bar:
        if kw["op"] == "mean" or len(factors) > 1:
            variant = VariantOptions(kw["op"], factors, inputs.means)
            result = run_variants(model, tokenizer, inputs.benchmarks, ns, variant, progress=bar, **common)
        else:
            result = run_ablation(
                model, tokenizer, inputs.benchmarks, ns, op=kw["op"], factor=factors[0], progress=bar, **common
            )
    baseline_warnings(result, inputs, kw)
    curve = result.summary.get("curve") if len(factors) > 1 else None
    if not save_result(result, kw, inputs, extra=(lambda folder: _write_curve(curve, folder)) if curve else None):
        return
    lines = curve_lines(curve) if curve else ablation_lines(result.summary, kw["op"], ns.kind)
    for line in lines:
        click.echo(line)
    click.echo(f"wrote {kw['out']}")


def _write_curve(curve, folder: Path) -> None:
    import pandas as pd

    from ..fileio import write_text_atomic
    from .sweep import CURVE_COLUMNS

    write_text_atomic(folder / "curve.csv", pd.DataFrame(curve, columns=list(CURVE_COLUMNS)).to_csv(index=False))


@click.command(name="cross-culture")
@common_options
@click.option(
    "--neurons",
    "neurons",
    multiple=True,
    required=True,
    type=click.Path(exists=False),
    help="Culture-specific NeuronSet JSON files, or a folder of them; repeat for several.",
)
@click.option("--split", default=None, help="Evaluate only this split (e.g. heldout).")
def cross_culture(neurons, split, **kw) -> None:
    """Suppress each country's specific set and measure every country's change (a matrix)."""
    from ..errors import InputError
    from .country_random import DEFAULT_PER_COUNTRY
    from .display import cross_culture_lines, own_country_line
    from .experiments import run_cross_culture

    (factor,) = parse_factor_option(kw, sweep_ok=False)
    if kw["op"] == "mean":
        raise InputError(
            "cross-culture supports --op suppress or enhance (mean ablation: use ablate --op mean per set)"
        )
    paths = []
    for p in map(Path, neurons):
        if p.is_dir():
            paths += sorted(p.glob("*.json"))
        elif p.exists():
            paths.append(p)
        else:
            raise InputError(f"neuron set {p} does not exist")
    if not paths:
        raise InputError(f"no NeuronSet JSON files in {', '.join(neurons)}")
    inputs = check_inputs(kw, paths)
    if split is not None:  # filtered here too, so that the progress bar counts what is evaluated
        inputs.benchmarks = {k: [e for e in v if e.split == split] for k, v in inputs.benchmarks.items()}
        inputs.benchmarks = {k: v for k, v in inputs.benchmarks.items() if v}
        if not inputs.benchmarks:
            raise InputError(f"no examples of split {split!r} in the benchmarks")
    model, tokenizer = load_for_eval(kw, inputs, inputs.sets)
    with eval_bar(kw, inputs, 1 + len(inputs.sets) * (1 + DEFAULT_PER_COUNTRY)) as bar:  # each set and its randoms
        result = run_cross_culture(
            model,
            tokenizer,
            inputs.benchmarks,
            inputs.sets,
            op=kw["op"],
            factor=factor,
            split=split,
            n_boot=kw["n_boot"],
            progress=bar,
            site_map=kw["site_map"],
            options=EvalOptions(**eval_opts(kw)),
        )
    baseline_warnings(result, inputs, kw)
    if not save_result(result, kw, inputs):
        return
    for line in cross_culture_lines(result.summary):
        click.echo(line)
    for line in (own_country_line(result.summary), _baseline_line(result, inputs)):
        if line:
            click.echo(line)
    click.echo(f"wrote {kw['out']}")


def _baseline_line(result, inputs, original: str = "original") -> str | None:
    """The original model's accuracy on the multiple-choice questions against their chance level."""
    from ..chance import chance_level
    from .display import baseline_line
    from .scorers import example_kind

    rows = result.rows[(result.rows["condition"] == original) & (result.rows["kind"] == "mcq")]
    chance = chance_level(ex for exs in inputs.benchmarks.values() for ex in exs if example_kind(ex) == "mcq")
    if rows.empty or chance != chance:  # no multiple-choice questions, or none with options: no chance level
        return None
    return baseline_line(100.0 * float(rows["score"].mean()), len(rows), 100.0 * chance)
