"""Evaluation: scorers against unbatched oracles, SAQ and scale metrics, bootstrap, experiments, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.data import Example, write_examples
from culture_neurons.errors import InputError
from culture_neurons.evaluation import (
    EvalOptions,
    alignment,
    compare_to_random,
    evaluate,
    evaluate_examples,
    mean_ci,
    parse_scale,
    read_rows,
    run_ablation,
    run_cross_culture,
    write_rows,
)
from culture_neurons.evaluation.metrics import format_p, specificity_gap
from culture_neurons.evaluation.power import detectable_paired
from culture_neurons.evaluation.saq import contains_run, normalise, saq_match
from culture_neurons.models.adapters import get_adapter
from culture_neurons.models.prompting import render_prompt
from culture_neurons.selection import NeuronSet, RandomBaseline
from tests.tiny import build_tokenizer, make_examples, tiny_model

LABELS = ("A", "B", "C", "D")


def mcq(n=10):
    out = []
    for i, e in enumerate(make_examples(n)):
        out.append(
            Example(
                id=e.id,
                prompt=e.prompt,
                answer=e.answer,
                group=e.group,
                dataset="demo",
                split=("identification", "heldout")[i % 2],
                template_id=f"t{i % 2}",
                options=("sushi", "tacos and rice", "paella", "tea"),
                labels=LABELS,
            )
        )
    return out


def prompt_ids(tok, text):
    return tok(render_prompt(tok, text), add_special_tokens=False)["input_ids"]


def full_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float().cpu()


def gate_set(model, layers=(0, 1), n=None, kind="general"):
    adapter = get_adapter(model)
    width = adapter.sites["mlp.gate"].width
    rows = [(layer, i) for layer in layers for i in range(n or width)]
    return NeuronSet.from_columns(
        ["mlp.gate"] * len(rows),
        [r[0] for r in rows],
        [r[1] for r in rows],
        kind=kind,
        num_layers=adapter.num_layers,
        widths=adapter.widths,
    )


@pytest.fixture
def tok(tokenizer):
    return tokenizer


def test_generate_and_choice_match_an_unbatched_oracle(llama, tok):
    exs = mcq(9)
    gen = evaluate_examples(llama, tok, exs, scorer="generate", batch_size=4)
    choice = evaluate_examples(llama, tok, exs, scorer="choice", batch_size=1)
    for ex, g, c in zip(exs, gen, choice):
        ids = prompt_ids(tok, ex.prompt)
        logits = full_logits(llama, ids)[-1]
        label_tokens = [
            tok(render_prompt(tok, ex.prompt) + " " + lab, add_special_tokens=False)["input_ids"][len(ids)]
            for lab in LABELS
        ]
        probs = logits[label_tokens].softmax(-1)
        assert g["option_probs"] == pytest.approx(probs.tolist(), abs=1e-5)
        assert c["option_probs"] == pytest.approx(probs.tolist(), abs=1e-5)
        assert c["prediction"] == LABELS[int(probs.argmax())]
        assert (
            g["prediction"]
            == tok.decode([int(logits.argmax())], skip_special_tokens=True).strip().strip("\"'`.,:;!?)]}").strip()
        )
        assert g["correct"] == (g["prediction"] == ex.answer.strip()) and c["gold"] == ex.answer.strip()
        assert (
            g["kind"] == "mcq"
            and g["country"] == ex.group
            and g["split"] == ex.split
            and g["template"] == ex.template_id
        )


def test_loglik_matches_an_unbatched_oracle(llama, tok):
    exs = mcq(6)
    rows = evaluate_examples(llama, tok, exs, scorer="loglik", batch_size=4)
    for ex, row in zip(exs, rows):
        ids = prompt_ids(tok, ex.prompt)
        sums, means, chars = [], [], []
        for opt in ex.options:
            cont = " " + opt
            full = tok(render_prompt(tok, ex.prompt) + cont, add_special_tokens=False)["input_ids"]
            logp = full_logits(llama, full).log_softmax(-1)
            vals = [float(logp[p - 1, full[p]]) for p in range(len(ids), len(full))]
            sums.append(sum(vals))
            means.append(sum(vals) / len(vals))
            chars.append(len(opt))  # lm-eval's acc_norm: the option text's length, without the space
        gold = LABELS.index(ex.answer.strip())
        assert row["correct"] == (int(np.argmax(sums)) == gold)
        assert row["correct_norm"] == (int(np.argmax(np.array(sums) / np.array(chars))) == gold)
        assert row["option_probs"] == pytest.approx(torch.tensor(means).softmax(-1).tolist(), abs=1e-5)
        assert row["prediction"] == LABELS[int(np.argmax(sums))]


def test_batching_does_not_change_results(llama, tok):
    exs = mcq(7)
    for scorer in ("generate", "choice", "loglik"):
        a = evaluate_examples(llama, tok, exs, scorer=scorer, batch_size=1)
        b = evaluate_examples(llama, tok, exs, scorer=scorer, batch_size=5)
        assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
        for x, y in zip(a, b):
            assert x["option_probs"] == pytest.approx(y["option_probs"], abs=1e-5)


def test_multi_token_generation_matches_hf_generate(llama, tok):
    exs = [Example(id=f"o{i}", prompt=e.prompt, answer="paella", group="Spain") for i, e in enumerate(make_examples(5))]
    rows = evaluate_examples(llama, tok, exs, max_new_tokens=4, batch_size=3)
    for ex, row in zip(exs, rows):
        ids = torch.tensor([prompt_ids(tok, ex.prompt)], device=llama.device)
        out = llama.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False, pad_token_id=0
        )
        text = tok.decode(out[0, ids.shape[1] :].cpu().tolist(), skip_special_tokens=True)
        assert row["prediction"] == text.strip().strip("\"'`.,:;!?)]}").strip() and row["kind"] == "open"


def test_scale_parsing_and_alignment():
    assert parse_scale('7"}') == 7 and parse_scale(" 10.") == 10 and parse_scale('"3"') == 3
    assert parse_scale("7.5") is None and parse_scale("seven") is None and parse_scale("") is None
    assert alignment(3, 3, 1, 10) == 100.0
    assert alignment(10, 3, 1, 10) == pytest.approx(0.0)
    assert alignment(1, 3, 1, 10) == pytest.approx(100 * (1 - 2 / 7))
    assert alignment(None, 3, 1, 10) == 0.0 and alignment(11, 3, 1, 10) == 0.0 and alignment(0, 3, 1, 10) == 0.0


def test_scale_and_saq_rows(llama, tok):
    exs = [
        Example(
            id="s",
            prompt="Rate it from 1 to 10. Answer:",
            answer="4",
            group="Spain",
            dataset="wvb",
            scale_min=1,
            scale_max=10,
        ),
        Example(
            id="q",
            prompt="What food? Answer:",
            answer="paella",
            group="Spain",
            dataset="saq",
            meta={"answers": ["paella", "rice"]},
        ),
    ]
    rows = evaluate_examples(llama, tok, exs, scale_max_new_tokens=3, saq_max_new_tokens=5)
    scale, saq = rows
    assert scale["kind"] == "scale" and scale["score"] == alignment(parse_scale(scale["prediction"]), 4, 1, 10) / 100
    assert saq["kind"] == "saq" and saq["correct"] == (saq_match(saq["prediction"], ["paella", "rice"]) is not None)


def test_saq_matching():
    assert normalise("Ｆried  RICE-balls!") == ["fried", "rice", "ball"]
    assert saq_match("I think they eat fried rice balls.", ["rice ball"]) == "rice ball"
    assert saq_match("rice and fried balls", ["fried rice"]) is None  # not contiguous
    assert saq_match("Dumplings", ["dumpling"]) == "dumpling"
    assert saq_match("饺子和面条", ["饺子"]) == "饺子"  # CJK: one token per character
    assert saq_match("김치찌개", ["김치"]) is None  # Korean words are not split or lemmatised
    assert contains_run(["a", "b", "c"], ["b", "c"]) and not contains_run(["a"], [])
    assert saq_match("classes", ["class"]) == "class" and normalise("bus") == ["bus"]


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 300
    for t in range(trials):
        values = rng.random(120) < 0.6
        ci = mean_ci(values.astype(float), n_boot=400, seed=t)
        hits += ci["ci_low"] <= 60.0 <= ci["ci_high"]
    assert 0.88 <= hits / trials <= 0.99


def test_compare_to_random_detects_a_real_drop_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    n = 400
    original = (rng.random(n) < 0.7).astype(float)
    flip = lambda p: np.where(rng.random(n) < p, 0.0, original)
    randoms = np.stack([flip(0.02) for _ in range(10)])
    strong = compare_to_random(original, flip(0.4), randoms, n_boot=500)
    assert strong["change"]["value"] < -20 and strong["difference"]["p_one_sided"] < 0.01
    assert strong["fraction_random_smaller_drop"] == 1.0 and strong["change"]["ci_high"] < 0
    weak = compare_to_random(original, flip(0.02), randoms, n_boot=500)
    assert weak["difference"]["p_one_sided"] > 0.05 and len(weak["random_changes"]) == 10


def slow_gap(cb, ci, nb, ni, n_boot, seed):
    """Oracle: the same resample indices, every statistic computed in a plain Python loop."""
    rng = np.random.default_rng(seed)
    idx_c = rng.integers(0, len(cb), size=(n_boot, len(cb)))
    idx_n = rng.integers(0, len(nb), size=(n_boot, len(nb)))
    drop = lambda b, a, idx: sum(b[j] - a[j] for j in idx) / len(idx)
    gap = drop(cb, ci, range(len(cb))) - drop(nb, ni, range(len(nb)))
    boots = sorted(drop(cb, ci, idx_c[r]) - drop(nb, ni, idx_n[r]) for r in range(n_boot))
    one = sum(1 for g in boots if g - gap >= gap)
    two = sum(1 for g in boots if abs(g - gap) >= abs(gap))
    return gap * 100, np.quantile(boots, [0.025, 0.975]) * 100, (1 + one) / (1 + n_boot), (1 + two) / (1 + n_boot)


@pytest.mark.parametrize("culture_flip,nlu_flip", [(0.35, 0.05), (0.1, 0.1), (0.0, 0.3)])
def test_specificity_gap_equals_a_loop_bootstrap(culture_flip, nlu_flip):
    rng = np.random.default_rng(3)
    cb = (rng.random(60) < 0.7).astype(float)
    ci = np.where(rng.random(60) < culture_flip, 0.0, cb)
    nb = (rng.random(45) < 0.8).astype(float)
    ni = np.where(rng.random(45) < nlu_flip, 0.0, nb)
    got = specificity_gap(cb, ci, nb, ni, n_boot=300, seed=7)
    gap, (lo, hi), p_one, p_two = slow_gap(list(cb), list(ci), list(nb), list(ni), 300, 7)
    assert (
        got["gap"] == pytest.approx(gap) and got["ci_low"] == pytest.approx(lo) and got["ci_high"] == pytest.approx(hi)
    )
    assert got["p_value"] == pytest.approx(p_one) and got["p_two_sided"] == pytest.approx(p_two)
    assert (got["n_culture"], got["n_nlu"]) == (60, 45)
    assert got["culture_drop"] - got["nlu_drop"] == pytest.approx(got["gap"])


def test_specificity_gap_detects_specific_drops_and_refuses_bad_input():
    rng = np.random.default_rng(0)
    cb, nb = (rng.random(400) < 0.7).astype(float), (rng.random(400) < 0.7).astype(float)
    specific = specificity_gap(cb, np.where(rng.random(400) < 0.4, 0.0, cb), nb, nb, n_boot=500)
    assert specific["gap"] > 20 and specific["ci_low"] > 0 and specific["p_value"] < 0.01
    same = specificity_gap(cb, cb, nb, nb, n_boot=200)
    assert same["gap"] == 0 and same["p_value"] > 0.5
    assert specificity_gap([], [], nb, nb)["gap"] is None
    with pytest.raises(InputError, match="culture base and intervened scores differ in length"):
        specificity_gap(cb, cb[:-1], nb, nb)
    with pytest.raises(InputError, match="NLU scores contain NaN"):
        specificity_gap(cb, cb, nb, np.full(400, np.nan))


def test_format_p():
    assert [format_p(p) for p in (None, float("nan"), 0.0004, 0.001, 0.0123, 1.0)] == [
        "-",
        "-",
        "<0.001",
        "0.001",
        "0.012",
        "1.000",
    ]


def test_suppressing_a_site_changes_evaluation_and_bad_sets_are_refused(llama, tok):
    exs = mcq(8)
    base = evaluate(llama, tok, exs, scorer="choice", n_boot=50)
    hit = evaluate(llama, tok, exs, gate_set(llama), scorer="choice", n_boot=50)
    assert hit.rows["condition"].iloc[0] == "suppress:general" and base.rows["condition"].iloc[0] == "original"
    assert not np.allclose(np.stack(base.rows["option_probs"]), np.stack(hit.rows["option_probs"]))
    empty = NeuronSet.from_columns([], [], [], kind="general")
    with pytest.raises(InputError, match="'general' is empty"):
        evaluate(llama, tok, exs, empty)
    foreign = NeuronSet.from_columns(["mlp.gate"], [30], [5], kind="general", num_layers=32, widths={"mlp.gate": 14336})
    with pytest.raises(InputError, match="different model"):
        evaluate(llama, tok, exs, foreign)
    with pytest.raises(InputError, match="unknown scorer"):
        evaluate(llama, tok, exs, scorer="bleu")


def test_summary_and_rows_files(llama, tok, tmp_path):
    result = evaluate(llama, tok, {"demo": mcq(8)}, scorer="choice", n_boot=100)
    entry = result.summary["demo"]
    assert entry["metric"] == "accuracy" and entry["overall"]["n"] == 8
    assert set(entry["by_split"]) == {"identification", "heldout"} and set(entry["by_template"]) == {"t0", "t1"}
    assert entry["overall"]["value"] == pytest.approx(100 * result.rows["correct"].mean())
    rows_path, summary_path = result.save(tmp_path / "out")
    back = read_rows(rows_path)
    assert list(back["id"]) == list(result.rows["id"]) and list(back["option_probs"].iloc[0]) == pytest.approx(
        result.rows["option_probs"].iloc[0]
    )
    csv = read_rows(write_rows(result.rows, tmp_path / "rows.csv"))
    assert csv["option_probs"].iloc[0] == pytest.approx(list(result.rows["option_probs"].iloc[0]))
    doc = json.loads(summary_path.read_text())
    assert (
        doc["results"]["demo"]["overall"]["n"] == 8
        and doc["format"] == "culture-neurons-summary"
        and doc["version"] == 2
    )


def test_ablation_experiment(llama, tok):
    exs = mcq(8)
    target = gate_set(llama, layers=(0,), n=60)
    result = run_ablation(
        llama, tok, {"demo": exs}, target, random=RandomBaseline(3), options=EvalOptions(scorer="choice"), n_boot=100
    )
    assert sorted(result.rows["condition"].unique()) == sorted(
        ["original", "suppress:general", "suppress:random:0", "suppress:random:1", "suppress:random:2"]
    )
    assert len(result.rows) == 5 * 8
    entry = result.summary["demo"]
    assert set(entry) == {"metric", "all", "identification", "heldout"}
    orig = result.rows[result.rows["condition"] == "original"]
    base = evaluate(llama, tok, {"demo": exs}, scorer="choice", n_boot=10).rows
    assert list(orig["prediction"]) == list(base["prediction"])
    all_ = entry["all"]
    tgt = result.rows[result.rows["condition"] == "suppress:general"]["score"].mean() * 100
    assert all_["change"]["value"] == pytest.approx(tgt - orig["score"].mean() * 100)
    assert len(all_["random_changes"]) == 3 and 0 <= all_["difference"]["p_one_sided"] <= 1
    # The random sets as a sample: the rank among them, its Monte-Carlo p, the two-level CI and the power.
    below = sum(1 for c in all_["random_changes"] if c <= all_["change"]["value"] + 1e-7)
    assert all_["m_random"] == 3 and all_["rank"] == below + 1 and all_["p_mc"] == pytest.approx((below + 1) / 4)
    assert all_["excess_ci_two_level"]["value"] == pytest.approx(all_["difference"]["value"])
    assert all_["mde"] is not None and all_["mde_parts"]["m"] == 3
    enh = run_ablation(
        llama,
        tok,
        {"demo": exs},
        target,
        op="enhance",
        random=RandomBaseline([5]),
        options=EvalOptions(scorer="choice"),
        n_boot=50,
    )
    assert enh.config["experiment"] == "enhancement" and "enhance:random:5" in set(enh.rows["condition"])
    with pytest.raises(InputError, match="empty"):
        run_ablation(llama, tok, exs, NeuronSet.from_columns([], [], [], kind="general"))


def test_cross_culture_matrix(llama, tok, tmp_path):
    exs = mcq(9)
    adapter = get_adapter(llama)
    sets = [
        NeuronSet.from_columns(
            ["mlp.gate"] * 30,
            [0] * 30,
            list(range(i * 30, i * 30 + 30)),
            kind=f"specific:{c}",
            num_layers=2,
            widths=adapter.widths,
        )
        for i, c in enumerate(["Japan", "Mexico", "Spain"])
    ]
    result = run_cross_culture(llama, tok, exs, sets, options=EvalOptions(scorer="choice"), n_boot=50)
    assert list(result.matrix.index) == ["Japan", "Mexico", "Spain"] and list(result.matrix.columns) == [
        "Japan",
        "Mexico",
        "Spain",
    ]
    rows = result.rows
    for c in ["Japan", "Mexico", "Spain"]:
        for e in ["Japan", "Mexico", "Spain"]:
            after = rows[(rows["condition"] == f"suppress:{c}") & (rows["country"] == e)]["score"].mean()
            before = rows[(rows["condition"] == "original") & (rows["country"] == e)]["score"].mean()
            assert result.matrix.loc[c, e] == pytest.approx(100 * (after - before))
            cell = result.summary["change"][c][e]
            pair = rows[rows["country"] == e].pivot_table(index="id", columns="condition", values="score")
            sd = float((pair[f"suppress:{c}"] - pair["original"]).std(ddof=1))
            mde = detectable_paired(sd, 3)  # the paired test's power; None when no pair differs from another
            assert cell["mde"] == (None if mde is None else pytest.approx(100 * mde))
    result.save(tmp_path / "cc")
    assert (tmp_path / "cc" / "matrix.csv").is_file()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama-eval")
    tiny_model("llama").save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def test_evaluate_cli(model_dir, tmp_path):
    bench = tmp_path / "demo.jsonl"
    write_examples(bench, mcq(6))
    model = tiny_model("llama")
    gate = gate_set(model, layers=(0,), n=20)
    gate.save(tmp_path / "g.json")
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    res = run(
        "evaluate",
        "-m",
        model_dir,
        "-b",
        bench,
        "--neurons",
        tmp_path / "g.json",
        "--scorer",
        "choice",
        "-o",
        tmp_path / "out",
        "-q",
        "--n-boot",
        "50",
    )
    assert res.exit_code == 0, res.output
    assert "demo: accuracy" in res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["neurons"]["kind"] == "general" and (tmp_path / "out" / "rows.parquet").is_file()
    res = run("evaluate", "-m", model_dir, "-b", tmp_path / "missing.jsonl", "-o", tmp_path / "o2")
    assert res.exit_code == 2 and "benchmark file" in res.output and "does not exist" in res.output
    NeuronSet.from_columns([], [], [], kind="general").save(tmp_path / "empty.json")
    res = run("evaluate", "-m", model_dir, "-b", bench, "--neurons", tmp_path / "empty.json", "-o", tmp_path / "o3")
    assert res.exit_code == 2 and "is empty" in res.output
    NeuronSet.from_columns(["mlp.gate"], [3], [1], num_layers=32, widths={"mlp.gate": 14336}, kind="general").save(
        tmp_path / "big.json"
    )
    res = run("evaluate", "-m", model_dir, "-b", bench, "--neurons", tmp_path / "big.json", "-o", tmp_path / "o4")
    assert res.exit_code == 2 and "different model" in res.output
    res = run(
        "ablate",
        "-m",
        model_dir,
        "-b",
        bench,
        "--neurons",
        tmp_path / "g.json",
        "--seeds",
        "2",
        "--scorer",
        "choice",
        "-o",
        tmp_path / "abl",
        "-q",
        "--n-boot",
        "50",
    )
    assert res.exit_code == 0, res.output
    assert "drops more than" in res.output and "random sets" in res.output


def test_variant_options_parse_and_refuse_factors():
    from culture_neurons.evaluation import VariantOptions, plan, sweep

    assert VariantOptions(factors="0,0.5,2").factor_list() == [0.0, 0.5, 2.0]
    assert VariantOptions("suppress", 1.0).factor_list() == [1.0]
    with pytest.raises(InputError, match="a factor sweep needs --op enhance"):
        VariantOptions("suppress", "1,2").factor_list()
    with pytest.raises(InputError, match="op 'mean' needs the channel means"):
        VariantOptions("mean").factor_list()
    # one label rule for the planner and the sweep
    assert sweep.condition_label is plan.condition_label
    assert plan.condition_label("enhance", "general") == "enhance:general"
    assert plan.condition_label("enhance", "random:0", 1.5) == "enhance@1.5:random:0"
