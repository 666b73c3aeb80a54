"""``culture-neurons train`` end to end on a tiny saved model: sets, evaluation, resume, bad input."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.data import write_examples
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection.neuronset import NeuronSet
from tests.tiny import build_tokenizer, make_examples, tiny_model

FAST = ["--batch-size", 4, "--micro-batch-size", 2, "--lr", 1e-3, "--n-boot", 50, "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-cli")
    model = tiny_model("llama", device="cpu")
    model.save_pretrained(root / "model")
    build_tokenizer().save_pretrained(root / "model")
    adapter = get_adapter(model)
    rng = random.Random(0)
    sites = ["mlp.gate"] * 6 + ["attn.q"] * 2
    layers = [1] * 6 + [1, 1]
    indices = rng.sample(range(96), 6) + rng.sample(range(64), 2)
    NeuronSet.from_columns(sites, layers, indices, kind="general", num_layers=2, widths=adapter.widths).save(
        root / "general.json"
    )
    write_examples(root / "train.jsonl", make_examples(12))
    write_examples(root / "eval.jsonl", make_examples(9, groups=("Japan", "Spain")))
    return root


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_train_three_sets_evaluate_and_resume(inputs, tmp_path):
    out = tmp_path / "ft"
    args = [
        "train",
        "--model",
        inputs / "model",
        "--neurons",
        inputs / "general.json",
        "--modules",
        "top,bottom,random",
        "--data",
        inputs / "train.jsonl",
        "--eval-bench",
        f"culture={inputs / 'eval.jsonl'}",
        "--budget",
        0.3,
        "--out",
        out,
        *FAST,
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "rank module" in result.output and "top: 2 modules (mlp.1, attn.1)" in result.output
    assert "culture [all] accuracy: base" in result.output and "top-random" in result.output
    for name in ("top", "bottom", "random"):
        assert (out / name / "config.json").is_file() and (out / name / "training.json").is_file()
    ranking = (out / "ranking.csv").read_text().splitlines()
    assert ranking[0].startswith("rank,module,layer,kind,neurons") and "in_top" in ranking[0] and len(ranking) == 5
    sets = json.loads((out / "modules.json").read_text())["sets"]
    assert sets["top"]["modules"] == ["mlp.1", "attn.1"] and sets["bottom"]["neurons"] == 0
    summary = json.loads((out / "eval" / "summary.json").read_text())["results"]["culture"]["all"]
    assert summary["base"]["n"] == 9
    for name in ("top", "bottom", "random"):
        change = summary[name]["change"]
        assert change["ci_low"] <= change["value"] <= change["ci_high"]
        assert summary[name]["value"]["value"] == pytest.approx(summary["base"]["value"] + change["value"])
    assert set(summary["contrasts"]) == {"top-random", "top-bottom"}
    done = json.loads((out / "finetune.json").read_text())
    assert done["results"]["culture"]["all"] == summary and done["training"]["top"]["steps"] == 3

    # a rerun reuses every finished set and evaluation
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert again.output.count("(finished earlier)") == 3
    assert json.loads((out / "eval" / "summary.json").read_text())["results"]["culture"]["all"] == summary

    # the outputs are ordinary model folders for evaluate and score
    ev = run("evaluate", "--model", out / "top", "--bench", inputs / "eval.jsonl", "--out", tmp_path / "ev", "-q")
    assert ev.exit_code == 0, ev.output
    sc = run(
        "score",
        "--model",
        out / "bottom",
        "--examples",
        inputs / "train.jsonl",
        "--out",
        tmp_path / "s.safetensors",
        "-q",
    )
    assert sc.exit_code == 0, sc.output


def test_one_set_writes_the_model_into_out(inputs, tmp_path):
    out = tmp_path / "top"
    result = run(
        "train",
        "-m",
        inputs / "model",
        "--neurons",
        inputs / "general.json",
        "--data",
        inputs / "train.jsonl",
        "--budget",
        0.3,
        "--max-steps",
        1,
        "--out",
        out,
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file() and (out / "ranking.csv").is_file()
    assert json.loads((out / "training.json").read_text())["steps"] == 1
    assert not (out / "eval").exists()


def test_ranking_only(inputs, tmp_path):
    result = run(
        "train",
        "-m",
        inputs / "model",
        "--neurons",
        inputs / "general.json",
        "--data",
        inputs / "train.jsonl",
        "--modules",
        "top",
        "--modules",
        "random",
        "--ranking-only",
        "--budget",
        0.3,
        "--out",
        tmp_path / "r",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "random:" in result.output and (tmp_path / "r" / "ranking.csv").is_file()
    assert not (tmp_path / "r" / "top").exists()


@pytest.mark.parametrize(
    "extra, drop, message",
    [
        (["--modules", ""], (), "error: the module set is empty"),
        (["--modules", " , "], (), "error: the module set is empty"),
        (["--budget", 0], (), "error: budget must be a fraction of the model's parameters in (0, 1], got 0"),
        (
            ["--data", "no-such-set"],
            ("--data",),
            "error: unknown dataset 'no-such-set': not an examples file and not a benchmark",
        ),
        (["--modules", "bottom"], ("--neurons",), "error: the top and bottom sets need a culture-general NeuronSet"),
        (["--lora", "--batch-size", 6], (), "error: batch_size 6 is not a multiple of micro_batch_size 4"),
    ],
)
def test_bad_input_is_one_line(inputs, tmp_path, extra, drop, message):
    base = {
        "--model": inputs / "model",
        "--neurons": inputs / "general.json",
        "--data": inputs / "train.jsonl",
        "--out": tmp_path / "x",
    }
    args = ["train"] + [a for k, v in base.items() if k not in drop for a in (k, v)] + extra
    result = run(*args, "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def _comparison_rows(splits):
    """Rows of ``base`` and ``top`` on one benchmark whose examples carry ``splits`` (one per example)."""
    import pandas as pd

    rng = random.Random(0)
    return pd.DataFrame(
        [
            {"benchmark": "blend", "id": str(i), "condition": c, "score": float(rng.random() < 0.5), "split": s}
            | {"kind": "mcq"}
            for i, s in enumerate(splits)
            for c in ("base", "top")
        ]
    )


@pytest.mark.parametrize(
    "splits, parts",
    [(["heldout"] * 12, ["all"]), (["heldout"] * 6 + ["identification"] * 6, ["all", "heldout", "identification"])],
)
def test_comparison_prints_a_split_only_when_it_is_not_the_whole_benchmark(splits, parts):
    from culture_neurons.training.compare import compare_conditions, format_comparison

    lines = format_comparison(compare_conditions(_comparison_rows(splits), ["top"], n_boot=50)).splitlines()
    assert [line.split("]")[0] for line in lines] == [f"blend [{p}" for p in parts], lines
    assert len(set(lines)) == len(lines)
