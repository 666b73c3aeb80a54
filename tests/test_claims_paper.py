"""The paper's claims beyond the first three, tested against slow, obviously correct versions: related cultures (a loop
over countries and a nested-loop bootstrap), layers against the pool (a direct count and an enumeration), cross-culture
against random sets of each country's size (compare_to_random on each country's own rows), and the overall verdict
(one synthetic table per branch of its rule)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from culture_neurons.analysis import claims as cl
from culture_neurons.analysis.layers import expected_share, layer_claim_of, p_at_least, pool_layers
from culture_neurons.analysis.overall import GENERAL, INCONCLUSIVE, NO_EFFECT, SPECIFIC, overall_verdict
from culture_neurons.errors import ConfigError, InputError
from culture_neurons.evaluation import plan as planner
from culture_neurons.evaluation.country_random import country_random_seed, country_random_sets
from culture_neurons.evaluation.cross_options import CrossCultureOptions
from culture_neurons.evaluation.experiments import cross_culture_summary, run_cross_culture
from culture_neurons.evaluation.metrics import compare_to_random
from culture_neurons.evaluation.related import DEFAULT_RELATED, check_groups, related_to
from culture_neurons.evaluation.scorers import EvalOptions
from culture_neurons.selection import NeuronSet
from tests.report_helpers import experiment_summary

SIX = ["UK", "USA", "Spain", "Mexico", "China", "South Korea"]
KINDS = {"blend": "culture", "commonsenseqa": "nlu"}


def random_label(country: str, k: int) -> str:
    return planner.condition_label("suppress", planner.country_random_kind(country, k))


def cross_rows(seed, sets, evals, n, hurt, randoms=0, random_hurt=lambda c, e: 0.05):
    """Per-item 0/1 rows of a cross-culture run: under country c's set an item of country e that the model gets right
    is lost with probability ``hurt(c, e)``; under each of c's random sets with ``random_hurt(c, e)``."""
    rng = np.random.default_rng(seed)
    records = []
    for e in evals:
        base = (rng.random(n) < 0.7).astype(float)
        conds = {"original": base}
        for c in sets:
            conds[f"suppress:{c}"] = np.where(rng.random(n) < hurt(c, e), 0.0, base)
            for k in range(randoms):
                conds[random_label(c, k)] = np.where(rng.random(n) < random_hurt(c, e), 0.0, base)
        for label, scores in conds.items():
            records += [
                {"condition": label, "benchmark": "b", "id": f"{e}-{i}", "country": e, "split": "heldout", "score": s}
                for i, s in enumerate(scores)
            ]
    return pd.DataFrame(records)


def per_item(rows, condition, country):
    sub = rows[(rows["condition"] == condition) & (rows["country"] == country)]
    return [float(x) for x in sub["score"]]  # in the order the items first appear, as the summary reads them


# --------------------------------------------------------------------------------------------- related cultures


def slow_related(rows, sets, groups, n_boot, seed):
    """The related-culture statistic and its two-level bootstrap, written as plain loops with the same draws."""
    evals = sorted(set(rows["country"]))
    near = {c: set() for c in sets}
    for g in groups:
        for c in g:
            if c in near:
                near[c] |= {x for x in g if x != c}
    orig = {e: per_item(rows, "original", e) for e in evals}
    supp = {(c, e): per_item(rows, f"suppress:{c}", e) for c in sets for e in evals}
    used = []
    for c in sets:
        related = [e for e in evals if e != c and e in near[c]]
        unrelated = [e for e in evals if e != c and e not in near[c]]
        if related and unrelated:
            used.append((c, related, unrelated))

    def excess(c, related, unrelated, pick):
        def drop(e):
            idx = pick(e)
            return sum(orig[e][i] - supp[(c, e)][i] for i in idx) / len(idx)

        return sum(drop(e) for e in related) / len(related) - sum(drop(e) for e in unrelated) / len(unrelated)

    value = sum(excess(c, r, u, lambda e: range(len(orig[e]))) for c, r, u in used) / len(used)
    rng = np.random.default_rng(seed)
    draws = {e: rng.integers(0, len(orig[e]), size=(n_boot, len(orig[e]))) for e in evals}
    picks = rng.integers(0, len(used), size=(n_boot, len(used)))
    reps = []
    for b in range(n_boot):
        each = [excess(c, r, u, lambda e, b=b: draws[e][b]) for c, r, u in used]
        reps.append(sum(each[j] for j in picks[b]) / len(used))
    return value, np.array(reps), used


def test_related_statistic_matches_a_loop_over_countries_and_a_nested_loop_bootstrap():
    sets = [*SIX, "Iran"]  # Iran has no related country in the default table: it is left out
    hurt = lambda c, e: 0.5 if c == e else 0.3 if e in related_to().get(c, ()) else 0.1
    rows = cross_rows(1, sets, sets, 25, hurt)
    summary, _ = cross_culture_summary(rows, sets, n_boot=60, seed=4)
    block = summary["related"]
    value, reps, used = slow_related(rows, sets, DEFAULT_RELATED, 60, 4)
    assert block["countries"] == len(used) == 6 and block["left_out"] == {
        "Iran": "no related country among the evaluated ones"
    }
    assert block["value"] == pytest.approx(100 * value)
    assert block["ci_low"] == pytest.approx(100 * np.quantile(reps, 0.025))
    assert block["ci_high"] == pytest.approx(100 * np.quantile(reps, 0.975))
    assert block["se"] == pytest.approx(100 * reps.std(ddof=1))
    assert block["p_one_sided"] == pytest.approx((1 + int(((reps - value) >= value).sum())) / 61)
    assert block["table"] == [list(g) for g in DEFAULT_RELATED]
    for c, related, unrelated in used:
        row = block["per_country"][c]
        assert row["related"] == related and row["unrelated"] == unrelated
        drop = lambda e, c=c: (
            100 * np.mean(np.array(per_item(rows, "original", e)) - per_item(rows, f"suppress:{c}", e))
        )
        assert row["related_drop"] == pytest.approx(np.mean([drop(e) for e in related]))
        assert row["unrelated_drop"] == pytest.approx(np.mean([drop(e) for e in unrelated]))


@pytest.mark.parametrize("related_hurt, expected", [(0.35, cl.HOLDS), (0.08, cl.NOT_SIGNIFICANT)])
def test_related_claim_holds_only_when_related_cultures_drop_more(related_hurt, expected):
    hurt = lambda c, e: 0.5 if c == e else related_hurt if e in related_to().get(c, ()) else 0.08
    rows = cross_rows(2, SIX, SIX, 120, hurt)
    summary, _ = cross_culture_summary(rows, SIX, n_boot=400, seed=0)
    claim = cl.related_claim(summary)
    assert claim.verdict == expected and claim.n == 6 and claim.n_unit == "countries"
    assert claim.p == summary["related"]["p_one_sided"] and claim.mde == summary["related"]["mde"] > 0
    assert "UK–USA, Spain–Mexico, China–South Korea" in claim.note
    checked = cl.evaluate_claims(cl.RunNumbers(cross_culture={"results": summary}, kinds=KINDS))
    assert [c.key for c in checked if c.key == "related"] == ["related"]


def test_relatedness_table_resolves_spellings_and_names_its_culprit():
    assert check_groups([["United Kingdom", "US"], ["korea", "China", "Japan"]]) == (
        ("UK", "USA"),
        ("South Korea", "China", "Japan"),
    )
    assert related_to([["UK", "USA"], ["UK", "Spain"]])["UK"] == {"USA", "Spain"}  # symmetric, several groups
    assert related_to([]) == {}
    with pytest.raises(InputError, match=r"related\[0\] must be a list of two or more"):
        check_groups([["UK"]])
    with pytest.raises(InputError, match=r"related\[1\]: unknown country 'Narnia'"):
        check_groups([["UK", "USA"], ["UK", "Narnia"]])
    with pytest.raises(InputError, match="the same country twice"):
        check_groups([["UK", "United Kingdom"]])
    spelled = ["United Kingdom", "US", "Iran"]  # a caller's own spellings meet the table's
    summary, _ = cross_culture_summary(cross_rows(3, spelled, spelled, 10, lambda c, e: 0.2), spelled, n_boot=20)
    assert summary["related"]["per_country"]["US"] == {
        **summary["related"]["per_country"]["US"],
        "related": ["United Kingdom"],
        "unrelated": ["Iran"],
    }
    rows = cross_rows(3, ["UK", "USA"], ["UK", "USA"], 10, lambda c, e: 0.2)
    summary, _ = cross_culture_summary(rows, ["UK", "USA"], n_boot=20, related=[])
    assert summary["related"]["value"] is None and cl.related_claim(summary) is None


def test_config_keys_are_checked_and_read_back():
    from culture_neurons.pipeline.config import config_from_dict, to_toml

    base = {"model": {"name": "m"}, "evaluate": {"related": [["UK", "USA"]], "cross_culture_random": 5}}
    config = config_from_dict(base)
    assert config.evaluate.related == [["UK", "USA"]] and config.evaluate.cross_culture_random == 5
    import tomllib

    assert config_from_dict(tomllib.loads(to_toml(config))).evaluate.related == [["UK", "USA"]]
    assert config_from_dict({"model": {"name": "m"}}).evaluate.related is None  # the default table
    with pytest.raises(ConfigError, match=r"config key evaluate.related\[0\]: unknown country 'Atlantis'"):
        config_from_dict({"model": {"name": "m"}, "evaluate": {"related": [["UK", "Atlantis"]]}})
    with pytest.raises(ConfigError, match="config key 'evaluate.related' must be a list of"):
        config_from_dict({"model": {"name": "m"}, "evaluate": {"related": ["UK", "USA"]}})
    with pytest.raises(ConfigError, match="'evaluate.cross_culture_random' must be 0 or more"):
        config_from_dict({"model": {"name": "m"}, "evaluate": {"cross_culture_random": -1}})


# ------------------------------------------------------------------------------------------------------- layers


def general_set():
    """A set over two pools of different widths on 6 layers, recording its pools as select_general does."""
    rng = np.random.default_rng(0)
    mlp = [
        ("mlp.gate", int(layer), int(i))
        for layer, i in zip(rng.choice(6, 40, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]), rng.permutation(50)[:40] % 50)
    ]
    attn = [("attn.q", int(layer), int(i)) for layer, i in zip(rng.integers(0, 6, 12), range(12))]
    neurons = list(dict.fromkeys(mlp + attn))
    sites, layers, indices = zip(*neurons)
    pools = [{"sites": ["mlp.gate"], "size": 300, "count": 0}, {"sites": ["attn.q"], "size": 120, "count": 0}]
    return NeuronSet.from_columns(
        list(sites),
        list(layers),
        list(indices),
        kind="general",
        num_layers=6,
        widths={"mlp.gate": 50, "attn.q": 20},
        params={"pools": pools},
    )


def test_pool_layers_and_the_claim_against_a_direct_count():
    from scipy.stats import hypergeom

    ns = general_set()
    pools = pool_layers(ns)
    by_pool = {p["sites"][0]: p for p in pools}
    for site, width in (("mlp.gate", 50), ("attn.q", 20)):
        direct = [sum(1 for n in ns.neurons if n.site == site and n.layer == layer) for layer in range(6)]
        assert by_pool[site]["set"] == direct and by_pool[site]["pool"] == [width] * 6
    claim = cl.layer_claim(cl.RunNumbers(general_pools=pools))
    hits = sum(1 for n in ns.neurons if n.layer < 4)
    total = len(ns.neurons)
    assert claim.value == pytest.approx(100 * (hits / total - 4 / 6))  # every layer of a pool is the same size
    assert "of the pool's neurons there" in claim.number and claim.p_test.startswith("hypergeometric")
    # One pool alone: the p is the hypergeometric upper tail of scipy.
    mlp = [by_pool["mlp.gate"]]
    k, below = sum(mlp[0]["set"]), sum(mlp[0]["set"][:4])
    assert layer_claim_of(mlp).p == pytest.approx(hypergeom.sf(below - 1, 300, 200, k))


def test_expected_share_follows_an_uneven_pool_and_the_p_an_enumeration():
    # A pool with most of its neurons in the lower layers: a set shaped like it is no evidence of anything.
    pools = [{"sites": ["x"], "pool": [30, 30, 30, 5, 5, 5], "set": [9, 9, 9, 1, 1, 1]}]
    assert expected_share(pools, 4) == pytest.approx(95 / 105)
    claim = layer_claim_of(pools)
    assert claim.value == pytest.approx(100 * (28 / 30 - 95 / 105)) and claim.verdict != cl.HOLDS
    uniform = layer_claim_of([{**pools[0], "pool": [30] * 6}])
    assert uniform.verdict == cl.HOLDS  # the same set against an even pool: shallow beyond it
    # Two tiny pools, p by enumerating every draw of the set's size from each pool.
    a = {"sites": ["a"], "pool": [2, 2, 2], "set": [2, 1, 0]}  # 6 neurons, 4 in layers 0-1, the set holds 3
    b = {"sites": ["b"], "pool": [1, 1, 1], "set": [1, 0, 1]}  # 3 neurons, 2 in layers 0-1, the set holds 2
    lower_a, lower_b = [1, 1, 1, 1, 0, 0], [1, 1, 0]
    for hits in range(6):
        count = total = 0
        for pick_a in itertools.combinations(range(6), 3):
            for pick_b in itertools.combinations(range(3), 2):
                total += 1
                count += sum(lower_a[i] for i in pick_a) + sum(lower_b[i] for i in pick_b) >= hits
        assert p_at_least([a, b], 2, hits) == pytest.approx(count / total)
    assert expected_share([a, b], 2) == pytest.approx(3 / 5 * 4 / 6 + 2 / 5 * 2 / 3)


# ------------------------------------------------------------------------------------ cross-culture vs random sets


def test_planner_labels_are_unique_and_deterministic():
    sets = [("UK", "h-uk"), ("South Korea", "h-kr")]
    randoms = [("UK", ["r0", "r1"]), ("South Korea", ["s0", "s1"])]
    conds, exp = planner.cross_culture(sets, ["blend"], "suppress", randoms, DEFAULT_RELATED)
    labels = [c.label for c in conds]
    assert labels == [
        "original",
        "suppress:UK",
        "suppress:South Korea",
        "suppress:random:UK:0",
        "suppress:random:UK:1",
        "suppress:random:South Korea:0",
        "suppress:random:South Korea:1",
    ]
    assert len(set(labels)) == len(labels) and exp.labels == labels
    assert planner.countries_of(exp) == ["UK", "South Korea"] and exp.related == DEFAULT_RELATED
    assert [c.neurons for c in conds[3:]] == ["r0", "r1", "s0", "s1"]
    again, _ = planner.cross_culture(sets, ["blend"], "suppress", randoms)
    assert [c.label for c in again] == labels
    plan = planner.Plan()
    plan.add(*planner.ablation(("general", "g"), [("random:0", "r")], ["blend"]))
    plan.add(conds, exp)  # the ablation's random:0 and the countries' random sets never share a label
    assert len({c.label for c in plan.conditions}) == len(plan.conditions) == 9


def test_vs_random_matches_compare_to_random_on_each_countrys_own_rows():
    sets = ["UK", "USA", "Spain"]
    rows = cross_rows(5, sets, sets, 40, lambda c, e: 0.4 if c == e else 0.1, randoms=4)
    summary, _ = cross_culture_summary(rows, sets, n_boot=80, seed=2)
    block = summary["vs_random"]
    for c in sets:
        ref = compare_to_random(
            np.array(per_item(rows, "original", c)),
            np.array(per_item(rows, f"suppress:{c}", c)),
            np.array([per_item(rows, random_label(c, k), c) for k in range(4)]),
            80,
            2,
        )
        got = block["per_country"][c]
        assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)
        assert block["labels"][c] == [random_label(c, k) for k in range(4)]
    pooled, per = block["pooled"], block["per_country"]
    assert pooled["value"] == pytest.approx(np.mean([per[c]["excess_ci_two_level"]["value"] for c in sets]))
    se = math.sqrt(sum(per[c]["excess_ci_two_level"]["se"] ** 2 for c in sets)) / 3
    assert pooled["se"] == pytest.approx(se) and pooled["ci_low"] == pytest.approx(pooled["value"] - 1.959964 * se)
    replicates = [np.mean([per[c]["random_changes"][s] for c in sets]) for s in range(4)]
    target = np.mean([per[c]["change"]["value"] for c in sets])
    assert pooled["rank"] == 1 + sum(r <= target + 1e-9 for r in replicates) and pooled["m_random"] == 4
    # Without random sets there is no such block, and the claim is left out.
    bare, _ = cross_culture_summary(rows[~rows["condition"].str.startswith("suppress:random:")], sets, n_boot=20)
    assert bare["vs_random"] is None and cl.own_country_random_claim(bare) is None


@pytest.mark.parametrize("m, expected", [(20, cl.HOLDS), (3, cl.NOT_SIGNIFICANT)])
def test_own_country_random_claim_needs_enough_random_sets(m, expected):
    sets = ["UK", "USA", "Spain", "Mexico"]
    rows = cross_rows(6, sets, sets, 150, lambda c, e: 0.4 if c == e else 0.05, randoms=m)
    summary, _ = cross_culture_summary(rows, sets, n_boot=200)
    claim = cl.own_country_random_claim(summary)
    assert claim.verdict == expected and claim.ci_high < 0 and claim.rank == 1 and claim.m_random == m
    assert claim.p == pytest.approx(1 / (m + 1)) and claim.p_test == cl.RANK_TEST
    assert f"the set drops more than all its {m} random sets in 4 of 4 countries" in claim.number
    if m == 3:
        assert "too few random sets (3)" in claim.reading


def test_run_cross_culture_draws_layer_matched_random_sets_per_country(tmp_path):
    from tests.test_batched_conditions import mcq_examples, sets_for
    from tests.tiny import build_tokenizer, tiny_model

    model = tiny_model("llama")
    specific = dict(zip(("Japan", "Mexico", "Spain"), sets_for(model, seed=4)))
    opts = EvalOptions(scorer="choice", batch_size=4, chat_template=False)
    result = run_cross_culture(
        model,
        build_tokenizer(),
        {"m": mcq_examples(9)},
        specific,
        options=opts,
        n_boot=30,
        cross=CrossCultureOptions(random_sets=2, related=[["Mexico", "Spain"]]),
    )
    conditions = set(result.rows["condition"])
    assert {random_label(c, k) for c in specific for k in range(2)} <= conditions and len(conditions) == 1 + 3 * 3
    for country, like in specific.items():
        drawn = country_random_sets(country, like, 2)
        # The same size and per-layer counts as the country's set (its sites are one pool), and not the set itself.
        for ns in drawn:
            assert len(ns) == len(like) and ns.content_hash() != like.content_hash()
            per_layer = lambda s: [sum(1 for n in s.neurons if n.layer == layer) for layer in range(2)]
            assert per_layer(ns) == per_layer(like)
    assert country_random_seed("Mexico", 0) != country_random_seed("Spain", 0) != country_random_seed("Spain", 1)
    summary = result.summary
    assert summary["related"]["countries"] == 2 and summary["related"]["table"] == [["Mexico", "Spain"]]
    rows = result.rows
    for country in specific:
        ref = compare_to_random(
            np.array(per_item(rows, "original", country)),
            np.array(per_item(rows, f"suppress:{country}", country)),
            np.array([per_item(rows, random_label(country, k), country) for k in range(2)]),
            30,
            0,
        )
        assert json.dumps(summary["vs_random"]["per_country"][country], sort_keys=True) == json.dumps(
            ref, sort_keys=True
        )
    assert result.config["random_sets"] == 2 and result.config["layer_matched"] is True
    none = run_cross_culture(
        model,
        build_tokenizer(),
        {"m": mcq_examples(9)},
        specific,
        options=opts,
        n_boot=30,
        cross=CrossCultureOptions(random_sets=0),
    )
    assert none.summary["vs_random"] is None and len(set(none.rows["condition"])) == 4
    with pytest.raises(InputError, match="random_sets"):
        run_cross_culture(
            model, build_tokenizer(), {"m": mcq_examples(9)}, specific, cross=CrossCultureOptions(random_sets=-1)
        )


def test_pipeline_runs_each_countrys_random_sets_and_resumes(tmp_path):
    from culture_neurons import rundir
    from culture_neurons.pipeline import run_pipeline
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    model = save_tiny_model(tmp_path / "tiny-llama")
    cfg = tiny_run_config(
        model,
        tmp_path / "run",
        evaluate={"experiments": ["cross-culture"], "cross_culture_random": 2},
        report={"enabled": False},
    )
    first = run_pipeline(cfg, progress=False)
    keys = {s.key for s in first.steps}
    summary = json.loads((tmp_path / "run/eval/cross-culture/summary.json").read_text())["results"]
    countries = list(summary["vs_random"]["per_country"])
    assert countries and all(summary["vs_random"]["per_country"][c]["m_random"] == 2 for c in countries)
    assert {rundir.condition_key("demo-culture", random_label(c, k)) for c in countries for k in range(2)} <= keys
    assert summary["related"]["table"] == [list(g) for g in DEFAULT_RELATED]
    again = run_pipeline(cfg, progress=False)
    assert {s.key: s.status for s in again.steps if s.status != "skipped"} == {}
    # A new relatedness table re-summarises cross-culture and evaluates nothing again.
    cfg["evaluate"]["related"] = [["Iran", "Spain"]]
    third = run_pipeline(cfg, progress=False)
    assert {s.key for s in third.steps if s.status == "ran"} == {rundir.experiment_key("cross-culture")}
    summary = json.loads((tmp_path / "run/eval/cross-culture/summary.json").read_text())["results"]
    assert summary["related"]["table"] == [["Iran", "Spain"]]


# ------------------------------------------------------------------------------------------------ overall verdict


def overall_of(ablation, **blocks):
    summary = experiment_summary(ablation)
    for bench, extra in blocks.items():
        summary["results"][bench]["heldout"].update(extra)
    return overall_verdict(cl.evaluate_claims(cl.RunNumbers(ablation=summary, kinds=KINDS)))


def test_overall_culture_specific():
    overall = overall_of({"blend": (-6.0, -8.0, -4.0), "commonsenseqa": (0.5, -2.0, 3.0)})
    assert overall.kind == SPECIFIC and overall.line.startswith("Overall: culture-specific: ")
    assert [c.key for c in overall.rows] == ["cultural-drop", "nlu-spared"]


@pytest.mark.parametrize("culture", [(-12.9, -19.4, -6.5), (-1.0, -4.0, 2.0)])
def test_overall_generally_important_when_nlu_drops_beyond_random(culture):
    overall = overall_of({"blend": culture, "commonsenseqa": (-14.6, -18.0, -11.0)})
    assert overall.kind == GENERAL
    assert overall.text.startswith("these neurons are generally important, not culture-specific: suppressing them")
    assert "commonsenseqa (heldout) Δ -14.6 [-18.0, -11.0] points" in overall.text
    held = culture[2] < 0
    assert ("as well as culture (blend (heldout) Δ -12.9" in overall.text) == held
    assert ("no cultural drop beyond random is shown" in overall.text) == (not held)


def test_overall_inconclusive_without_nlu_or_with_nlu_undecided():
    alone = overall_of({"blend": (-6.0, -8.0, -4.0)})
    assert alone.kind == INCONCLUSIVE and "no NLU benchmark above chance was tested" in alone.text
    open_nlu = overall_of({"blend": (-6.0, -8.0, -4.0), "commonsenseqa": (-5.5, -9.0, 0.5)})
    assert open_nlu.kind == INCONCLUSIVE and "NLU is neither shown hurt nor spared (commonsenseqa" in open_nlu.text
    assert overall_verdict([]).kind == INCONCLUSIVE


def test_overall_no_more_than_random_needs_the_power_to_say_so():
    # A null whose test would have seen a 3-point excess drop: the neurons are no more cultural than random ones.
    powered = overall_of({"blend": (-0.5, -2.0, 1.0)}, blend={"mde": 3.0})
    assert powered.kind == NO_EFFECT and "rules out an excess drop larger than 3.0 points" in powered.text
    wrong_way = overall_of({"blend": (3.0, 1.0, 5.0)})
    assert wrong_way.kind == NO_EFFECT and "random sets drop more" in wrong_way.text
    # The same null with a 12-point detectable effect rules nothing out.
    weak = overall_of({"blend": (-0.5, -8.0, 7.0)}, blend={"mde": 12.0})
    assert weak.kind == INCONCLUSIVE and "too few items (n=200) to rule out an excess drop of up to 12.0" in weak.text
    # A drop whose rank p cannot reach 0.05 with 3 random sets is not a null result either.
    few = overall_of({"blend": (-6.0, -8.0, -4.0)}, blend={"rank": 1, "m_random": 3, "p_mc": 0.25, "mde": 2.0})
    assert few.kind == INCONCLUSIVE and "too few random sets (3)" in few.text


def test_overall_skips_rows_at_chance():
    summary = experiment_summary({"blend": (-6.0, -8.0, -4.0)}, original=26.0, n=100)
    checked = cl.evaluate_claims(cl.RunNumbers(ablation=summary, kinds=KINDS, chance={"blend": 25.0}))
    assert checked[0].at_chance and overall_verdict(checked).text.startswith(
        "inconclusive: no cultural benchmark above chance"
    )
