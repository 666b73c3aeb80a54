"""``culture-neurons train``: a thin layer over :func:`culture_neurons.training.api.run_selective_finetuning`."""

from __future__ import annotations

import click

from ..evaluation.scorers import SCORERS, EvalOptions
from .train import SCHEDULERS, TrainConfig

_T = TrainConfig()
_E = EvalOptions()


@click.command()
@click.option(
    "--model",
    "-m",
    required=True,
    help="Base model: hub id, local folder, .gguf file, or alias (smollm2-135m-instruct).",
)
@click.option(
    "--neurons",
    type=click.Path(dir_okay=False),
    default=None,
    help="Culture-general NeuronSet JSON (needed for top and bottom).",
)
@click.option(
    "--modules",
    "modules",
    multiple=True,
    default=("top",),
    show_default=True,
    help="top, bottom, random, full, or module names (mlp.3,attn.5). Repeat, or top,bottom,random, to train several.",
)
@click.option(
    "--data",
    "-d",
    required=True,
    help="Training data: a benchmark name (qnli, mrpc, demo-nlu, ...) or an examples JSONL.",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: the fine-tuned model with one set, one sub-folder per set with several.",
)
@click.option(
    "--data-dir", type=click.Path(exists=True), default=None, help="Local benchmark files (e.g. ../shared/data)."
)
@click.option("--part", default=None, help="Benchmark part to train on (default: train where there is one).")
@click.option(
    "--max-examples",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Training examples (a seeded sample).",
)
@click.option(
    "--template", "templates", default=None, help="Prompt templates for a benchmark: ids or 'all' (default: the first)."
)
@click.option(
    "--budget",
    type=float,
    default=0.1,
    show_default=True,
    help="Parameter budget of top/bottom/random, as a fraction of the model.",
)
@click.option(
    "--seed",
    type=int,
    default=42,
    show_default=True,
    help="Seed of the bottom/random draws, the data sample and training.",
)
@click.option("--epochs", type=float, default=_T.epochs, show_default=True)
@click.option("--lr", type=float, default=_T.learning_rate, show_default=True, help="Learning rate.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=_T.batch_size,
    show_default=True,
    help="Effective batch (gradient accumulation).",
)
@click.option(
    "--micro-batch-size",
    type=click.IntRange(min=1),
    default=_T.micro_batch_size,
    show_default=True,
    help="Examples per forward pass.",
)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many optimizer steps.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default=_T.scheduler, show_default=True)
@click.option(
    "--save-steps",
    type=click.IntRange(min=1),
    default=_T.save_steps,
    show_default=True,
    help="Checkpoint interval in optimizer steps.",
)
@click.option("--keep-checkpoints", is_flag=True, help="Keep checkpoints/ after training.")
@click.option(
    "--lora", is_flag=True, help="Train LoRA adapters on the chosen modules (needs peft) instead of their full weights."
)
@click.option("--lora-r", type=click.IntRange(min=1), default=_T.lora_r, show_default=True)
@click.option("--lora-alpha", type=int, default=_T.lora_alpha, show_default=True)
@click.option("--gradient-checkpointing", is_flag=True)
@click.option(
    "--report-to",
    default="none",
    show_default=True,
    help="Trainer integrations, e.g. tensorboard or wandb (comma-separated).",
)
@click.option("--no-resume", is_flag=True, help="Refuse an output folder that holds a run instead of resuming it.")
@click.option(
    "--eval-bench",
    "-b",
    "benches",
    multiple=True,
    help="Evaluate base and fine-tuned models on this examples JSONL (name=path to name it); repeat for several.",
)
@click.option(
    "--scorer",
    type=click.Choice(SCORERS),
    default=_E.scorer,
    show_default=True,
    help="Scorer for multiple-choice evaluation.",
)
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=_E.batch_size, show_default=True)
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--no-chat-template", is_flag=True, help="Use prompts as they are, for training and evaluation.")
@click.option("--ranking-only", is_flag=True, help="Write and print the module ranking and sets, then stop.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--device", default=None)
@click.option("--site-map", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--quiet", "-q", is_flag=True)
def train(**kw) -> None:
    """Fine-tune only the modules that hold (top) or lack (bottom) culture-general neurons, or a random
    set of the same budget, then compare base and fine-tuned models on the --eval-bench benchmarks."""
    from .api import run_selective_finetuning, set_names
    from .compare import format_comparison

    config = TrainConfig(
        epochs=kw["epochs"],
        learning_rate=kw["lr"],
        batch_size=kw["batch_size"],
        micro_batch_size=kw["micro_batch_size"],
        max_steps=kw["max_steps"],
        scheduler=kw["scheduler"],
        seed=kw["seed"],
        save_steps=kw["save_steps"],
        keep_checkpoints=kw["keep_checkpoints"],
        lora=kw["lora"],
        lora_r=kw["lora_r"],
        lora_alpha=kw["lora_alpha"],
        gradient_checkpointing=kw["gradient_checkpointing"],
        report_to=tuple(s.strip() for s in kw["report_to"].split(",") if s.strip())
        if "," in kw["report_to"]
        else kw["report_to"],
    )
    modules = [s for spec in kw["modules"] for s in set_names(spec)]  # "top,bottom" is two sets, "mlp.3,attn.5" one
    eval_options = EvalOptions(
        scorer=kw["scorer"], batch_size=kw["eval_batch_size"], chat_template=not kw["no_chat_template"]
    )
    templates = kw["templates"]
    if templates and templates != "all":
        templates = [t.strip() for t in templates.split(",") if t.strip()]
    run = run_selective_finetuning(
        kw["model"],
        kw["neurons"],
        kw["data"],
        kw["out"],
        module_sets=modules,
        budget=kw["budget"],
        seed=kw["seed"],
        config=config,
        eval_benchmarks=kw["benches"] or None,
        eval_options=eval_options,
        data_dir=kw["data_dir"],
        part=kw["part"],
        max_examples=kw["max_examples"],
        templates=templates,
        chat_template=not kw["no_chat_template"],
        dtype=kw["dtype"],
        device=kw["device"],
        site_map=kw["site_map"],
        resume=not kw["no_resume"],
        n_boot=kw["n_boot"],
        progress=not kw["quiet"],
        ranking_only=kw["ranking_only"],
        echo=click.echo,
    )
    if kw["ranking_only"]:  # the ranking and the sets were printed as they were chosen
        click.echo(f"wrote {run.paths['ranking']} and {run.paths['modules']}")
        return
    for name, result in run.results.items():
        loss = f"; mean loss {result.train_loss:.4f}" if result.train_loss is not None else ""
        state = " (finished earlier)" if result.skipped else f" in {result.seconds:.1f} s"
        click.echo(
            f"{name}: {result.trainable_params:,} trained parameters, {result.steps} steps on "
            f"{result.examples} examples{state}{loss}"
            f" -> {run.models[name]}"
        )
    if run.summary:
        click.echo(format_comparison(run.summary))
    click.echo(f"wrote {kw['out']}")
