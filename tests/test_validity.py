"""Validity statistics against slow, obviously correct versions (tiny random models, no downloads)."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from culture_neurons.intervention import channel_means, intervene
from culture_neurons.models.adapters import get_adapter
from culture_neurons.models.hooks import forward_hooks
from culture_neurons.selection.neuronset import NeuronSet
from culture_neurons.validity import (
    TargetRows,
    ablation_effects,
    assign_folds,
    cells,
    item_key,
    jaccard_index,
    random_jaccard,
    single_neurons,
)
from culture_neurons.validity.faithfulness import spearman
from culture_neurons.validity.folds import fold_tables, template_tables, total
from culture_neurons.validity.overlap import hypergeom_pmf, layer_distribution, selection_frequency
from tests.tiny import build_tokenizer, tiny_model
from tests.validity_helpers import choice_examples

WIDTHS = {"mlp.gate": 96, "attn.q": 64, "attn.k": 32, "attn.v": 32}


def _set(keys, kind="custom"):
    keys = sorted(keys)
    return NeuronSet.from_columns(
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], kind=kind, num_layers=2, widths=WIDTHS
    )


def _random_keys(rng, n):
    universe = [(s, layer, i) for s, w in WIDTHS.items() for layer in range(2) for i in range(w)]
    return set(rng.sample(universe, n))


def test_jaccard_matches_python_sets():
    rng = random.Random(0)
    for _ in range(20):
        a, b = _random_keys(rng, rng.randint(1, 60)), _random_keys(rng, rng.randint(1, 60))
        expected = len(a & b) / len(a | b)
        assert jaccard_index(_set(a), _set(b)) == pytest.approx(expected)
    same = _random_keys(rng, 10)
    assert jaccard_index(_set(same), _set(same)) == 1.0


def _brute_random_jaccard(pools):
    """Enumerate every pair of subsets per pool: the exact mean Jaccard of two random sets."""
    per_pool = []
    for size, a, b in pools:
        items = range(size)
        per_pool.append(
            [(set(x), set(y)) for x in itertools.combinations(items, a) for y in itertools.combinations(items, b)]
        )
    total_j, count = 0.0, 0
    for combo in itertools.product(*per_pool):
        inter = sum(len(x & y) for x, y in combo)
        union = sum(len(x | y) for x, y in combo)
        total_j += inter / union if union else 1.0
        count += 1
    return total_j / count


@pytest.mark.parametrize("pools", [[(6, 2, 3)], [(5, 1, 4)], [(4, 2, 2), (3, 1, 2)], [(7, 3, 3)]])
def test_random_jaccard_is_exact(pools):
    assert random_jaccard(pools)["expected"] == pytest.approx(_brute_random_jaccard(pools), abs=1e-12)


def test_hypergeom_pmf_against_counting():
    pool, a, b = 9, 4, 3
    counts = np.zeros(min(a, b) + 1)
    fixed = set(range(a))
    for y in itertools.combinations(range(pool), b):
        counts[len(fixed & set(y))] += 1
    assert np.allclose(hypergeom_pmf(pool, a, b), counts / counts.sum())


def test_selection_frequency_and_layers():
    a, b = _set({("mlp.gate", 0, 1), ("mlp.gate", 1, 2)}), _set({("mlp.gate", 0, 1), ("attn.q", 1, 5)})
    freq = selection_frequency([a, b])
    assert freq[("mlp.gate", 0, 1)] == 1.0 and freq[("attn.q", 1, 5)] == 0.5 and len(freq) == 3
    dist = layer_distribution(a)
    assert dist["per_layer"] == [1, 1]


def test_spearman_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=30)
        y = np.round(x + rng.normal(size=30), 1)  # ties
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


# -- folds ------------------------------------------------------------------------------------


def test_folds_keep_questions_together_and_balance_groups():
    exs = choice_examples(12, templates=("cloze", "alt"))
    folds = assign_folds(exs, 3, seed=1)
    by_item = {}
    for ex, f in zip(exs, folds):
        by_item.setdefault(item_key(ex), set()).add(f)
    assert all(len(v) == 1 for v in by_item.values())
    per_group = {}
    for ex, f in zip(exs, folds):
        if ex.template_id == "cloze":
            per_group.setdefault(ex.group, []).append(f)
    for v in per_group.values():
        sizes = [v.count(k) for k in range(3)]
        assert max(sizes) - min(sizes) <= 1
    # Input order does not change the assignment.
    shuffled = list(reversed(exs))
    assert dict(zip((e.id for e in shuffled), assign_folds(shuffled, 3, seed=1))) == dict(
        zip((e.id for e in exs), folds)
    )
    every = [ex.id for part in cells(exs, 3, seed=1).values() for ex in part]
    assert sorted(every) == sorted(ex.id for ex in exs)


def test_fold_tables_sum_to_the_full_table():
    from culture_neurons.attribution.engine import score_examples

    model, tok = tiny_model("llama"), build_tokenizer(chat_template=False)
    exs = choice_examples(9, templates=("cloze", "alt"))
    groups = sorted({ex.group for ex in exs})
    parts = {
        key: score_examples(
            model, tok, part, target="choice", chat_template=False, groups=groups, progress=False, batch_size=3
        )
        for key, part in cells(exs, 2).items()
    }
    full = score_examples(
        model, tok, exs, target="choice", chat_template=False, groups=groups, progress=False, batch_size=3
    )
    summed = total(list(parts.values()))
    assert summed.num_examples == full.num_examples == len(exs)
    for site in full.sites:
        scale = full.scores[site].abs().max()
        assert (summed.scores[site] - full.scores[site]).abs().max() <= 1e-5 * scale
    assert torch.equal(summed.counts, full.counts)
    assert torch.allclose(summed.prob_sums, full.prob_sums, rtol=1e-6)
    # Folds and templates are two other groupings of the same cells: each sums to the full table too.
    for grouping in (fold_tables(parts), template_tables(parts)):
        again = total(list(grouping.values()))
        assert (again.scores["mlp.gate"] - full.scores["mlp.gate"]).abs().max() <= 1e-5 * full.scores[
            "mlp.gate"
        ].abs().max()
    # Nothing is scored twice: every example id is in exactly one cell table.
    ids = [i for t in parts.values() for i in t.meta["example_ids"]]
    assert len(ids) == len(set(ids)) == len(exs)


# -- true effects -----------------------------------------------------------------------------


def _slow_choice_p(model, tok, ex):
    """p of the gold option: softmax over options of each option's mean token log-prob, one sequence at a time."""
    from culture_neurons.likelihood import gold_option

    prompt_ids = tok(ex.prompt)["input_ids"]
    means = []
    for option in ex.options:
        full = tok(ex.prompt + " " + option)["input_ids"]
        cont = full[len(prompt_ids) :]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([full])).logits[0].float()
        logp = logits.log_softmax(-1)
        means.append(sum(float(logp[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(cont)) / len(cont))
    probs = torch.tensor(means).softmax(0)
    return float(probs[gold_option(ex)])


@pytest.mark.parametrize("shared_prefix", [True, False], ids=["prompt-once", "prompt-per-row"])
def test_single_neuron_effects_match_a_one_at_a_time_loop(monkeypatch, shared_prefix):
    import culture_neurons.validity.effects as effects_module

    if not shared_prefix:  # the path for models without a KV cache
        monkeypatch.setattr(effects_module, "supports_shared_prefix", lambda model: False)
    model, tok = tiny_model("llama", seed=3), build_tokenizer(chat_template=False)
    exs = choice_examples(5, templates=("cloze",))
    rows = TargetRows(tok, exs, "choice", chat_template=False)
    ns = _set({("mlp.gate", 0, 3), ("mlp.gate", 1, 40), ("attn.q", 0, 7), ("attn.v", 1, 2), ("attn.k", 0, 30)})
    units = single_neurons(ns) + [ns]  # the last unit zeroes all five together
    effects, base = ablation_effects(
        model, rows, units, max_rows=24
    )  # small max_rows: several chunks and replica groups
    slow_base = [_slow_choice_p(model, tok, ex) for ex in exs]
    assert np.allclose(base.numpy(), slow_base, atol=1e-5)
    for unit, effect in zip(units, effects.tolist()):
        with intervene(model, unit):
            after = [_slow_choice_p(model, tok, ex) for ex in exs]
        expected = float(np.mean(np.array(slow_base) - np.array(after)))
        assert effect == pytest.approx(expected, abs=1e-5)
    assert any(abs(e) > 1e-4 for e in effects.tolist())  # the check is not vacuous


def test_single_neuron_effects_on_a_fused_projection_model():
    model, tok = tiny_model("phi3", seed=1), build_tokenizer(chat_template=False)
    exs = choice_examples(3, templates=("cloze",))
    rows = TargetRows(tok, exs, "choice", chat_template=False)
    adapter = get_adapter(model)
    ns = NeuronSet.from_columns(
        ["mlp.gate", "attn.k"], [0, 1], [5, 3], num_layers=adapter.num_layers, widths=adapter.widths
    )
    effects, _ = ablation_effects(model, rows, single_neurons(ns), max_rows=8)
    base = [_slow_choice_p(model, tok, ex) for ex in exs]
    for unit, effect in zip(single_neurons(ns), effects.tolist()):
        with intervene(model, unit):
            after = [_slow_choice_p(model, tok, ex) for ex in exs]
        assert effect == pytest.approx(float(np.mean(np.array(base) - np.array(after))), abs=1e-5)


def test_mean_ablation_sets_exactly_the_mean():
    model, tok = tiny_model("llama", seed=2), build_tokenizer(chat_template=False)
    exs = choice_examples(6, templates=("cloze",))
    ns = _set({("mlp.gate", 0, 4), ("mlp.gate", 1, 9), ("attn.q", 1, 11)})
    means = channel_means(model, tok, exs, ns, batch_size=4, chat_template=False)
    adapter = get_adapter(model)
    seen = {}

    def grab(name):
        def hook(_m, _i, out):
            seen[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()

        return hook

    mods = [
        (adapter.sites["mlp.gate"].modules[0], grab("g0")),
        (adapter.sites["mlp.gate"].modules[1], grab("g1")),
        (adapter.sites["attn.q"].modules[1], grab("q1")),
    ]
    ids = tok([exs[0].prompt], return_tensors="pt")["input_ids"]
    with intervene(model, ns, op="mean", means=means), forward_hooks(mods), torch.no_grad():
        model(input_ids=ids)
    # forward_hooks registered after intervene's run after them, so they see the replaced output.
    assert torch.all(seen["g0"][..., 4] == means["mlp.gate"][0, 4].to(seen["g0"].dtype))
    assert torch.all(seen["g1"][..., 9] == means["mlp.gate"][1, 9].to(seen["g1"].dtype))
    assert torch.all(seen["q1"][..., 11] == means["attn.q"][1, 11].to(seen["q1"].dtype))
    # The mean itself: average over every real prompt token, computed one example at a time.
    acts = []
    with forward_hooks([(adapter.sites["mlp.gate"].modules[1], grab("raw"))]), torch.no_grad():
        for ex in exs:
            model(input_ids=tok([ex.prompt], return_tensors="pt")["input_ids"])
            acts.append(seen["raw"][0, :, 9].double())
    assert float(means["mlp.gate"][1, 9]) == pytest.approx(float(torch.cat(acts).mean()), rel=1e-5, abs=1e-6)
    assert not math.isclose(float(means["mlp.gate"][1, 9]), 0.0, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------------
# sides: benchmarks at chance are left out of the pooled effects


def _two_option(name: str, n: int):
    from culture_neurons.data import Example

    return [
        Example(id=f"{name}{i}", prompt="Q? Answer:", answer=" yes", group=name, options=["yes", "no"])
        for i in range(n)
    ]


def _frame(scores: dict[str, tuple[str, list[float]]]):
    import pandas as pd

    rows = [
        {"side": side, "benchmark": bench, "id": f"{bench}{i}", "score": s}
        for bench, (side, values) in scores.items()
        for i, s in enumerate(values)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("drop", [True, False])
def test_chance_report_leaves_at_chance_benchmarks_out_of_the_pool(drop):
    from culture_neurons.validity.conditions import chance_report

    n = 40
    benches = {"culture": {"c": _two_option("c", n)}, "nlu": {"good": _two_option("g", n), "coin": _two_option("k", n)}}
    frame = _frame(
        {"c": ("culture", [1.0] * n), "good": ("nlu", [1.0] * 36 + [0.0] * 4), "coin": ("nlu", [1.0, 0.0] * 20)}
    )
    report = chance_report(benches, frame, n_boot=50, seed=0, drop_at_chance=drop)
    assert report["benchmarks"]["coin"]["at_chance"] and not report["benchmarks"]["good"]["at_chance"]
    assert len(report["warnings"]) == 1 and "coin baseline accuracy" in report["warnings"][0]
    nlu = report["sides"]["nlu"]
    if drop:  # the coin-flip benchmark cannot show a drop: the side pools the informative one only
        assert nlu == {"informative": True, "pooled": ["good"], "left_out": ["coin"]}
    else:
        assert nlu == {"informative": False, "pooled": ["good", "coin"], "left_out": []}
    # a side with nothing above chance keeps everything and is not informative
    all_coin = _frame({"c": ("culture", [1.0] * n), "good": ("nlu", [1.0, 0.0] * 20), "coin": ("nlu", [0.0, 1.0] * 20)})
    side = chance_report(benches, all_coin, n_boot=50, seed=0, drop_at_chance=drop)["sides"]["nlu"]
    assert side == {"informative": False, "pooled": ["good", "coin"], "left_out": []}


def test_evaluator_pools_only_the_benchmarks_above_chance(tmp_path):
    from culture_neurons.evaluation.scorers import EvalOptions
    from culture_neurons.validity.conditions import Evaluator

    n = 40
    culture, nlu = {"c": _two_option("c", n)}, {"good": _two_option("g", n), "coin": _two_option("k", n)}
    ev = Evaluator(None, None, culture, nlu, EvalOptions(scorer="loglik"), tmp_path, bootstrap=(50, 0))
    frame = _frame(
        {"c": ("culture", [1.0] * n), "good": ("nlu", [1.0] * 36 + [0.0] * 4), "coin": ("nlu", [1.0, 0.0] * 20)}
    )
    frame["id"] = [ex.id for exs in (culture["c"], nlu["good"], nlu["coin"]) for ex in exs]
    ev._evaluate = lambda path, *args: frame.to_parquet(path) or frame  # no model: the condition's rows as given
    scores = ev.scores("original")
    assert scores["nlu"].tolist() == [1.0] * 36 + [0.0] * 4 and scores["culture"].size == n
    assert set(ev.by_benchmark("original")) == {"c", "good", "coin"}  # per-benchmark views keep everything
