"""evaluate / ablate / cross-culture CLIs: caps, --op mean, the factor sweep, tables, warnings, inputs and outputs."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.data import Example, read_examples, write_examples
from culture_neurons.data.sampling import cap_examples
from culture_neurons.evaluation import EvalOptions, evaluate
from culture_neurons.evaluation.api import chance_warnings
from culture_neurons.evaluation.display import ablation_lines
from culture_neurons.evaluation.summary import read_summary
from culture_neurons.intervention import channel_means
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection import NeuronSet, RandomBaseline
from tests.tiny import build_tokenizer, make_examples, tiny_model

LABELS = ("A", "B", "C", "D")


def mcq(n=12, split=None):
    return [
        Example(
            id=e.id,
            prompt=e.prompt,
            answer=e.answer,
            group=e.group,
            dataset="demo",
            split=split or ("identification", "heldout")[i % 2],
            options=("sushi", "tacos", "paella", "tea"),
            labels=LABELS,
        )
        for i, e in enumerate(make_examples(n))
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-cli")
    model = tiny_model("llama")
    model.save_pretrained(root / "model")
    build_tokenizer().save_pretrained(root / "model")
    write_examples(root / "demo.jsonl", mcq(12))
    write_examples(root / "heldout.jsonl", mcq(8, split="heldout"))
    adapter = get_adapter(model)
    rows = [(layer, i) for layer in (0, 1) for i in range(0, 96, 3)]
    NeuronSet.from_columns(
        ["mlp.gate"] * len(rows),
        [r[0] for r in rows],
        [r[1] for r in rows],
        kind="general",
        num_layers=adapter.num_layers,
        widths=adapter.widths,
    ).save(root / "g.json")
    return root


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def base(files, command="evaluate", bench="demo.jsonl"):
    return [command, "-m", files / "model", "-b", files / bench, "--scorer", "choice", "--n-boot", "30"]


def test_caps_take_the_same_sample_as_cap_examples(files, tmp_path):
    res = run(*base(files), "-o", tmp_path / "o", "-q", "--max-per-group", "2", "--seed", "3")
    assert res.exit_code == 0, res.output
    rows = pd.read_parquet(tmp_path / "o" / "rows.parquet")
    expected = cap_examples(read_examples(files / "demo.jsonl"), max_per_group=2, seed=3)
    assert list(rows["id"]) == [e.id for e in expected] and len(rows) == 6
    summary = read_summary(tmp_path / "o" / "summary.json")
    assert summary["config"]["caps"] == {"max_per_group": 2, "limit": None, "seed": 3}
    res = run(*base(files), "-o", tmp_path / "o2", "-q", "--limit", "5")
    assert res.exit_code == 0 and len(pd.read_parquet(tmp_path / "o2" / "rows.parquet")) == 5


def test_evaluate_op_mean_equals_the_api_and_keeps_the_means(files, tmp_path):
    res = run(
        *base(files),
        "--neurons",
        files / "g.json",
        "--op",
        "mean",
        "--mean-examples",
        files / "heldout.jsonl",
        "-o",
        tmp_path / "m",
        "-q",
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "means.safetensors").is_file()
    got = pd.read_parquet(tmp_path / "m" / "rows.parquet")
    model, tok = tiny_model("llama"), build_tokenizer()
    ns = NeuronSet.load(files / "g.json")
    means = channel_means(model, tok, read_examples(files / "heldout.jsonl"), ns)
    ref = evaluate(
        model, tok, {"demo": read_examples(files / "demo.jsonl")}, ns, "mean", means=means, scorer="choice", n_boot=10
    )
    assert got["condition"].iloc[0] == "mean:general"
    np.testing.assert_allclose(np.stack(got["option_probs"]), np.stack(ref.rows["option_probs"]), rtol=1e-4, atol=1e-6)
    plain = evaluate(
        model, tok, {"demo": read_examples(files / "demo.jsonl")}, ns, "suppress", scorer="choice", n_boot=10
    )
    assert not np.allclose(np.stack(plain.rows["option_probs"]), np.stack(ref.rows["option_probs"]))
    # the saved means serve the next run (--means), with the same result
    res = run(
        *base(files),
        "--neurons",
        files / "g.json",
        "--op",
        "mean",
        "--means",
        tmp_path / "m" / "means.safetensors",
        "-o",
        tmp_path / "m2",
        "-q",
    )
    assert res.exit_code == 0, res.output
    again = pd.read_parquet(tmp_path / "m2" / "rows.parquet")
    assert list(again["prediction"]) == list(got["prediction"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--op", "mean"], "--op mean needs channel means"),
        (["--means", "x.safetensors"], "only apply with --op mean"),
        (["--factor", "nan"], "--factor must be a finite number"),
        (["--factor", "inf"], "--factor must be a finite number"),
        (["--factor", "two"], "--factor must be a number"),
        (["--factor", "1,2"], "--factor takes one number here"),
        (["--device", "tpu9"], "tpu9"),
    ],
)
def test_bad_options_fail_before_any_work(files, tmp_path, extra, message):
    res = run(*base(files), "--neurons", files / "g.json", "-o", tmp_path / "bad", *extra)
    assert res.exit_code != 0 and message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "bad").exists()


def test_ablate_table_has_plain_columns_and_no_repeated_lines(files, tmp_path):
    res = run(
        *base(files, "ablate", "heldout.jsonl"),
        "--neurons",
        files / "g.json",
        "--seeds",
        "3",
        "-o",
        tmp_path / "a",
        "-q",
    )
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("demo")]
    assert len(lines) == 1, res.output  # only the heldout split: "all" is printed once, not twice
    assert "drops more than" in res.output and "p (one-sided)" in res.output and "random sets" in lines[0]
    assert "smaller drop" not in res.output and len(lines) == len(set(lines))
    summary = read_summary(tmp_path / "a" / "summary.json")
    assert summary["kind"] == "ablation" and summary["version"] == 2
    # both splits: all, identification and heldout each once
    lines = ablation_lines(json.loads((tmp_path / "a" / "summary.json").read_text())["results"], "suppress", "general")
    assert len(lines) == 2 and lines[0].startswith("benchmark")


def _ablation_entry(change, random_changes):
    ci = {"value": 50.0, "ci_low": 40.0, "ci_high": 60.0}
    frac = sum(-c < -change for c in random_changes) / len(random_changes)  # the metric's definition (drops)
    return {
        "metric": "accuracy",
        "all": {
            "n": 10,
            "original": ci,
            "target": {"value": 50.0 + change},
            "random_mean": 50.0,
            "change": {"value": change},
            "difference": {"value": change, "p_one_sided": 0.5, "p_two_sided": 0.5},
            "random_changes": random_changes,
            "fraction_random_smaller_drop": frac,
        },
    }


def test_enhance_columns_say_rises_and_count_the_sets_it_rises_above():
    summary = {"demo": _ablation_entry(+4.0, [1.0, 5.0, -2.0])}
    header, row = ablation_lines(summary, "enhance", "general")
    assert "rises more than" in header and "drops more than" not in header
    assert row.endswith("2/3 random sets")  # +4 rises above +1 and -2, not above +5
    header, row = ablation_lines({"demo": _ablation_entry(-4.0, [-1.0, -5.0, 2.0])}, "suppress", "general")
    assert "drops more than" in header and row.endswith("2/3 random sets")  # -4 drops below -1 and +2


def test_enhancement_sweep_gives_a_curve(files, tmp_path):
    res = run(
        *base(files, "ablate"),
        "--neurons",
        files / "g.json",
        "--op",
        "enhance",
        "--factor",
        "0,1,2",
        "--seeds",
        "2",
        "-o",
        tmp_path / "s",
        "-q",
    )
    assert res.exit_code == 0, res.output
    curve = pd.read_csv(tmp_path / "s" / "curve.csv")
    assert sorted(curve["factor"].unique()) == [0.0, 1.0, 2.0]
    assert set(curve["part"]) == {"all", "identification", "heldout"}
    one = curve[curve["factor"] == 1.0]
    assert (one["change"] == 0).all() and (one["difference"] == 0).all()  # x1 is the identity
    rows = pd.read_parquet(tmp_path / "s" / "rows.parquet")
    assert (rows["condition"] == "original").sum() == 12  # the original model is evaluated once for all factors
    # x0 equals suppression of the same set
    res = run(*base(files, "ablate"), "--neurons", files / "g.json", "--seeds", "2", "-o", tmp_path / "z", "-q")
    zero = read_summary(tmp_path / "z" / "summary.json")["results"]["demo"]["all"]
    row = curve[(curve["factor"] == 0.0) & (curve["part"] == "all")].iloc[0]
    assert row["change"] == pytest.approx(zero["change"]["value"]) and row["difference"] == pytest.approx(
        zero["difference"]["value"]
    )
    res = run(*base(files, "ablate"), "--neurons", files / "g.json", "--factor", "0,2", "-o", tmp_path / "bad")
    assert res.exit_code != 0 and "needs --op enhance" in res.output


def test_ablate_op_mean(files, tmp_path):
    res = run(
        *base(files, "ablate"),
        "--neurons",
        files / "g.json",
        "--op",
        "mean",
        "--mean-examples",
        files / "heldout.jsonl",
        "--seeds",
        "2",
        "-o",
        tmp_path / "am",
        "-q",
    )
    assert res.exit_code == 0, res.output
    summary = read_summary(tmp_path / "am" / "summary.json")
    assert summary["kind"] == "mean-ablation" and "mean:random:1" in summary["config"]["random_sets"][1].join(
        ["mean:", ""]
    )
    assert {"original", "mean:general", "mean:random:0", "mean:random:1"} == set(
        pd.read_parquet(tmp_path / "am" / "rows.parquet")["condition"]
    )


def test_an_output_that_is_an_input_is_refused(files, tmp_path):
    out = tmp_path / "same"
    out.mkdir()
    write_examples(out / "summary.json", mcq(4))
    res = run(*base(files), "-b", out / "summary.json", "-o", out)
    assert res.exit_code != 0 and "is also the input --bench" in res.output
    assert read_examples(out / "summary.json")  # untouched


def test_a_failed_write_leaves_no_output_folder(files, tmp_path, monkeypatch):
    import culture_neurons.evaluation.api as api

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(api, "write_json_atomic", full)
    res = run(*base(files), "-o", tmp_path / "new" / "out", "-q")
    assert res.exit_code != 0 and "No space left" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "new" / "out").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_really_full_disk_leaves_no_output_folder(files, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        res = run(*base(files), "-o", disk / "out", "-q")
        assert res.exit_code != 0 and "Traceback" not in res.output, res.output
        assert not (disk / "out").exists() and not list(disk.iterdir())
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_chance_warnings(files, tmp_path):
    exs = {"demo": mcq(100)}
    assert chance_warnings(exs, {"demo": {"value": 26.0}}, "generate")  # 4 options: chance 25%
    warning = chance_warnings(exs, {"demo": {"value": 20.0}}, "choice")[0]
    assert "below the chance level" in warning and "--scorer loglik" in warning
    assert chance_warnings(exs, {"demo": {"value": 60.0}}, "generate") == []
    res = run(*base(files), "-o", tmp_path / "w")  # a random tiny model answers at chance
    assert res.exit_code == 0
    summary = read_summary(tmp_path / "w" / "summary.json")
    assert summary["warnings"] and "chance level" in res.output
    assert "loaded " in res.output and "evaluating" in res.output  # the loaded-model line and the progress log


def test_chance_hints_never_suggest_the_scorer_in_use():
    exs = {"demo": mcq(100)}
    letters = chance_warnings(exs, {"demo": {"value": 20.0}}, "generate")[0]
    assert "--scorer loglik" in letters and "cloze" in letters
    likelihood = chance_warnings(exs, {"demo": {"value": 20.0}}, "loglik")[0]
    assert "below the chance level" in likelihood and "--scorer" not in likelihood
    assert "even by option likelihood" in likelihood and "larger model" in likelihood


def test_old_summaries_are_read(tmp_path):
    (tmp_path / "v1.json").write_text(json.dumps({"config": {}, "package_version": "0.1", "metrics": {"demo": {}}}))
    assert read_summary(tmp_path / "v1.json")["results"] == {"demo": {}}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(Exception, match="bad.json is not valid JSON"):
        read_summary(tmp_path / "bad.json")


TASK_YAML = """task: tinytask
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}} Answer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.integration
def test_evaluate_lm_eval_tasks_pairs_conditions_by_document(files, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    docs = [
        {"question": f"Which country eats {w}?", "choices": ["Japan", "Mexico", "Spain", "Iran"], "label": i % 4}
        for i, w in enumerate(["sushi", "tacos", "paella", "rice", "tea", "bread", "noon", "breakfast"])
    ]
    (tasks / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tasks / "tinytask.yaml").write_text(TASK_YAML.format(data=tasks / "docs.jsonl"))
    res = run(
        "evaluate",
        "-m",
        files / "model",
        "--neurons",
        files / "g.json",
        "--lm-eval-tasks",
        "tinytask",
        "--lm-eval-include",
        tasks,
        "--seeds",
        "2",
        "--n-boot",
        "30",
        "-o",
        tmp_path / "lm",
        "-q",
    )
    assert res.exit_code == 0, res.output
    rows = pd.read_parquet(tmp_path / "lm" / "rows.parquet")
    assert sorted(rows["condition"].unique()) == [
        "original",
        "suppress:general",
        "suppress:random:0",
        "suppress:random:1",
    ]
    table = rows.pivot(index="id", columns="condition", values="score")
    assert len(table) == len(docs) and not table.isna().any().any()  # every document under every condition
    entry = read_summary(tmp_path / "lm" / "summary.json")["results"]["tinytask"]["all"]
    paired = (table["suppress:general"] - table["original"]).mean() * 100
    assert entry["change"]["value"] == pytest.approx(paired) and entry["n"] == len(docs)
    from culture_neurons.rundir import slug

    for label in table.columns:  # lm-eval's own aggregate equals the mean of the rows we paired
        saved = json.loads((tmp_path / "lm" / "lm_eval" / slug(label) / "results.json").read_text())
        assert saved["results"]["tinytask"]["acc,none"] == pytest.approx(table[label].mean())
    assert len(list((tmp_path / "lm" / "lm_eval").glob("*/results.json"))) == 4
    res = run("evaluate", "-m", files / "model", "--lm-eval-tasks", "tinytask", "-o", tmp_path / "x")
    assert res.exit_code != 0 and "give --neurons" in res.output


def test_cross_culture_cli_prints_n_and_refuses_mean(files, tmp_path):
    model = tiny_model("llama")
    adapter = get_adapter(model)
    folder = tmp_path / "sets"
    for i, c in enumerate(["Japan", "Mexico", "Spain"]):
        NeuronSet.from_columns(
            ["mlp.gate"] * 30,
            [0] * 30,
            list(range(i * 30, i * 30 + 30)),
            kind=f"specific:{c}",
            num_layers=adapter.num_layers,
            widths=adapter.widths,
        ).save(folder / f"{c}.json")
    res = run(*base(files, "cross-culture"), "--neurons", folder, "--max-per-group", "2", "-o", tmp_path / "cc", "-q")
    assert res.exit_code == 0, res.output
    assert "n (questions)" in res.output and len(pd.read_csv(tmp_path / "cc" / "matrix.csv", index_col=0)) == 3
    rows = read_summary(tmp_path / "cc" / "summary.json")["results"]["rows"]
    hits = sum(r["diagonal_is_most_negative"] for r in rows.values())
    assert f"own country hurt most: {hits} of 3 countries (1 in 3 by chance)" in res.output, res.output
    baseline = [line for line in res.output.splitlines() if line.startswith("original model: accuracy")]
    assert len(baseline) == 1 and "on 6 questions; chance 25.0%" in baseline[0], res.output
    summary = read_summary(tmp_path / "cc" / "summary.json")
    assert all(summary["results"]["original"][c]["n"] == 2 for c in ["Japan", "Mexico", "Spain"])
    res = run(*base(files, "cross-culture"), "--neurons", folder, "--op", "mean", "-o", tmp_path / "cc2")
    assert res.exit_code != 0 and "cross-culture supports --op suppress or enhance" in res.output


def test_summary_declares_the_saq_lemmatiser(tmp_path):
    from culture_neurons.evaluation.saq import LEMMATISER

    model, tok = tiny_model("llama"), build_tokenizer()
    saq = [
        Example(
            id="s1",
            prompt="Popular food in Spain?",
            answer="paella",
            group="Spain",
            dataset="saq",
            meta={"answers": ["paella"]},
        )
    ]
    _, path = evaluate(model, tok, {"saq": saq}, saq_max_new_tokens=2, n_boot=10).save(tmp_path / "saq")
    assert read_summary(path)["saq_lemmatiser"] == LEMMATISER
    _, path = evaluate(model, tok, {"demo": mcq(4)}, scorer="choice", n_boot=10).save(tmp_path / "mcq")
    assert "saq_lemmatiser" not in read_summary(path)


def test_run_variants_with_one_factor_equals_run_ablation():
    from culture_neurons.evaluation import VariantOptions, run_ablation, run_variants

    model, tok = tiny_model("llama"), build_tokenizer()
    adapter = get_adapter(model)
    ns = NeuronSet.from_columns(
        ["mlp.gate"] * 40,
        [0] * 40,
        list(range(40)),
        kind="general",
        num_layers=adapter.num_layers,
        widths=adapter.widths,
    )
    benches = {"demo": mcq(8)}
    ours = run_variants(
        model,
        tok,
        benches,
        ns,
        VariantOptions("enhance", [3.0]),
        random=RandomBaseline(2),
        options=EvalOptions(scorer="choice"),
        n_boot=50,
    )
    ref = run_ablation(
        model,
        tok,
        benches,
        ns,
        op="enhance",
        factor=3.0,
        random=RandomBaseline(2),
        options=EvalOptions(scorer="choice"),
        n_boot=50,
    )
    assert ours.summary == ref.summary
    assert sorted(ours.rows["condition"].unique()) == sorted(ref.rows["condition"].unique())
