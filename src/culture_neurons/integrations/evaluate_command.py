"""``culture-neurons evaluate``: the benchmark evaluation of :mod:`culture_neurons.evaluation.cli` plus
``--lm-eval-tasks``, which runs the original model, NEURONS and random sets through lm-eval.

The command is put together here because it needs both layers: ``evaluation`` never imports
``integrations``, and this module imports each. Every input and option is checked before the model
loads; lm-eval is imported only when ``--lm-eval-tasks`` is given (it is an optional extra).
"""

from __future__ import annotations

import click
import pandas as pd

from ..errors import InputError
from ..evaluation.cli import evaluate_benchmarks, evaluate_options
from ..evaluation.cli_options import check_inputs, eval_bar, eval_opts, load_for_eval, parse_factor_option, save_result
from ..evaluation.display import ablation_lines
from ..evaluation.experiments import ExperimentResult, run_ablation
from ..evaluation.scorers import EvalOptions
from ..evaluation.sweep import VariantOptions, run_variants
from ..progress import progress
from ..selection.randomsets import RandomBaseline


@click.command()
@evaluate_options
@click.option(
    "--lm-eval-tasks",
    default=None,
    metavar="TASKS",
    help=(
        "lm-eval tasks (e.g. mmlu,hellaswag): run original, NEURONS and random sets through lm-eval, "
        "paired by document."
    ),
)
@click.option(
    "--lm-eval-include",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder of local lm-eval task YAMLs (e.g. from `data export-lm-eval`).",
)
@click.option(
    "--lm-eval-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="lm-eval: at most N documents per task.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="With --lm-eval-tasks: random sets (seeds 0..N-1).",
)
def evaluate(neurons, lm_eval_tasks, lm_eval_include, lm_eval_limit, seeds, **kw) -> None:
    """Evaluate a model on benchmarks, optionally suppressing, enhancing or mean-ablating NEURONS
    (with --lm-eval-tasks: also on lm-eval tasks, against random sets)."""
    if lm_eval_tasks is None:
        if lm_eval_include or lm_eval_limit:
            raise InputError("--lm-eval-include and --lm-eval-limit only apply with --lm-eval-tasks")
        evaluate_benchmarks(neurons, kw)
        return
    (factor,) = parse_factor_option(kw, sweep_ok=False)
    tasks = _lm_eval_tasks(lm_eval_tasks)
    if not neurons:
        raise InputError("--lm-eval-tasks compares the original model with NEURONS and random sets: give --neurons")
    inputs = check_inputs(kw, neurons, benches_optional=True)
    clash = sorted(set(tasks) & set(inputs.benchmarks))
    if clash:
        raise InputError(
            f"benchmark name(s) {', '.join(clash)} are also lm-eval task names; rename them with --bench NAME=FILE"
        )
    model, tokenizer = load_for_eval(kw, inputs, inputs.sets)
    _evaluate_lm_eval(kw, inputs, model, tokenizer, tasks, factor, (lm_eval_include, lm_eval_limit), seeds)


def _lm_eval_tasks(text: str) -> list[str]:
    try:
        from .lm_eval_conditions import parse_tasks
    except ImportError as exc:  # lm-eval is an optional extra
        raise InputError(
            f'--lm-eval-tasks needs lm-evaluation-harness: pip install "culture-neurons[lm-eval]" ({exc})'
        ) from None
    return parse_tasks(text)


def _evaluate_lm_eval(kw, inputs, model, tokenizer, tasks, factor, lm_eval, seeds) -> None:
    """The ablation experiment on lm-eval tasks (and on --bench files, if any), one summary for both.

    ``lm_eval`` is ``(include folder, document limit)``."""
    from .lm_eval_conditions import LmEvalSettings, run_lm_eval_conditions, save_lm_eval_results

    include, limit = lm_eval
    ns = inputs.sets[0].union(*inputs.sets[1:]) if len(inputs.sets) > 1 else inputs.sets[0]
    with progress(total=2 + seeds, desc="lm-eval conditions", unit="condition", disable=kw["quiet"]) as bar:
        got = run_lm_eval_conditions(
            model,
            tokenizer,
            tasks,
            ns,
            op=kw["op"],
            factor=factor,
            means=inputs.means,
            random=RandomBaseline(seeds),
            settings=LmEvalSettings(include_path=include, limit=limit, batch_size=kw["batch_size"]),
            n_boot=kw["n_boot"],
            progress=bar,
        )
    frames, summary = [got["rows"]], dict(got["summary"])
    if inputs.benchmarks:
        common = {
            "random": RandomBaseline(seeds),
            "n_boot": kw["n_boot"],
            "site_map": kw["site_map"],
            "options": EvalOptions(**eval_opts(kw)),
        }
        with eval_bar(kw, inputs, 2 + seeds) as bar:
            if kw["op"] == "mean":
                variant = VariantOptions("mean", means=inputs.means)
                ours = run_variants(model, tokenizer, inputs.benchmarks, ns, variant, progress=bar, **common)
            else:
                ours = run_ablation(
                    model, tokenizer, inputs.benchmarks, ns, op=kw["op"], factor=factor, progress=bar, **common
                )
        frames.append(ours.rows)
        summary.update(ours.summary)
    config = {
        "experiment": "lm-eval-ablation",
        "op": kw["op"],
        "factor": factor,
        "lm_eval_tasks": tasks,
        "lm_eval_include": include,
        "lm_eval_limit": limit,
        "conditions": got["conditions"],
        "model": str(kw["model"]),
        "benchmarks": [str(b) for b in kw["benches"]],
        "neuron_set": {"kind": ns.kind, "count": len(ns), "sha256": ns.content_hash()},
        "n_boot": kw["n_boot"],
    }
    result = ExperimentResult(pd.concat(frames, ignore_index=True), summary, config)
    if not save_result(result, kw, inputs, extra=lambda folder: save_lm_eval_results(got["results"], folder)):
        return
    for line in ablation_lines(result.summary, kw["op"], ns.kind):
        click.echo(line)
    click.echo(f"wrote {kw['out']} (lm-eval's own results.json per condition in {kw['out']}/lm_eval/)")
