"""The "What holds and what does not" verdicts, computed from synthetic summaries that make each claim hold or fail."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from culture_neurons.analysis import claims as cl
from tests.report_helpers import cross_summary, experiment_summary

KINDS = {"blend": "culture", "commonsenseqa": "nlu"}


def numbers(**kw):
    return cl.RunNumbers(kinds=KINDS, **kw)


def _one(items, key):
    found = [c for c in items if c.key == key]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    "diff, expected",
    [((-6.1, -10.4, -1.6), cl.HOLDS), ((3.0, 1.0, 5.0), cl.FAILS), ((-2.0, -5.0, 1.0), cl.NOT_SIGNIFICANT)],
)
def test_cultural_drop_against_random(diff, expected):
    claim = _one(cl.cultural_drop_claims(numbers(ablation=experiment_summary({"blend": diff}))), "cultural-drop")
    assert claim.verdict == expected
    assert (claim.value, claim.ci_low, claim.ci_high) == diff
    assert claim.scope == "blend (heldout)"
    assert f"{diff[0]:+.1f} [{diff[1]:+.1f}, {diff[2]:+.1f}]" in claim.number and "p 0.010" in claim.number


@pytest.mark.parametrize(
    "nlu, expected",
    [
        ((0.5, -2.0, 3.0), cl.HOLDS),  # NLU not hurt, cultural drop clearly larger than the NLU drop
        ((-14.6, -18.0, -11.0), cl.FAILS),  # NLU hurt beyond random (the demo's finding)
        ((-5.5, -9.0, 0.5), cl.NOT_SIGNIFICANT),  # NLU not significantly hurt, but no smaller a drop than culture's
    ],
)
def test_nlu_spared(nlu, expected):
    summary = experiment_summary({"blend": (-6.0, -8.0, -4.0), "commonsenseqa": nlu})
    claim = _one(cl.nlu_spared_claims(numbers(ablation=summary)), "nlu-spared")
    assert claim.verdict == expected and claim.scope == "commonsenseqa (heldout)"
    assert "NLU Δ" in claim.number and "(blend)" in claim.number


def test_specificity_gap_matches_a_normal_approximation_by_hand():
    c = {"difference": {"value": -6.0, "ci_low": -8.0, "ci_high": -4.0}}
    n = {"difference": {"value": 0.5, "ci_low": -2.5, "ci_high": 3.5}}
    gap, lo, hi = cl.specificity_gap(c, n)
    se = math.sqrt((4.0 / (2 * 1.959963984540054)) ** 2 + (6.0 / (2 * 1.959963984540054)) ** 2)
    assert (
        gap == pytest.approx(6.5)
        and lo == pytest.approx(6.5 - 1.959963984540054 * se)
        and hi == pytest.approx(6.5 + 1.959963984540054 * se)
    )


@pytest.mark.parametrize(
    "diff, expected",
    [((4.0, 1.0, 7.0), cl.HOLDS), ((-3.0, -5.0, -1.0), cl.FAILS), ((0.5, -1.0, 2.0), cl.NOT_SIGNIFICANT)],
)
def test_enhancement_helps(diff, expected):
    summary = experiment_summary({"blend": diff, "commonsenseqa": (9.0, 8.0, 10.0)}, name="enhancement", factor=2.0)
    claims = cl.enhancement_claims(numbers(enhancement=summary))
    assert [c.scope for c in claims] == ["blend (heldout)"]  # NLU benchmarks do not enter the enhancement claim
    assert claims[0].verdict == expected and "×2" in claims[0].title


@pytest.mark.parametrize(
    "hits, expected", [([True] * 8, cl.HOLDS), ([True] + [False] * 7, cl.NOT_SIGNIFICANT), ([False] * 8, cl.FAILS)]
)
def test_own_country_hurt_most(hits, expected):
    summary = cross_summary(hits)
    claim = cl.own_country_claim(numbers(cross_culture=summary))
    assert claim.verdict == expected
    rows = summary["results"]["rows"].values()
    assert claim.value == pytest.approx(sum(r["diagonal"] - r["off_diagonal_mean"] for r in rows) / len(hits))
    assert f"own country hurt most in {sum(hits)} of {len(hits)} (1 in {len(hits)} by chance)" in claim.number


@pytest.mark.parametrize("hits", [[True, False, True], [False] * 4, [True] * 2])
def test_cross_culture_terminal_line_counts_what_the_claim_counts(hits):
    from culture_neurons.evaluation.display import own_country_line

    summary = cross_summary(hits)
    claim = cl.own_country_claim(numbers(cross_culture=summary))
    line = own_country_line(summary["results"])
    k, n = sum(hits), len(hits)
    assert line == f"own country hurt most: {k} of {n} countries (1 in {n} by chance)"
    assert f"own country hurt most in {k} of {n} (1 in {n} by chance)" in claim.number


def test_bootstrap_mean_ci_against_a_loop():
    values = [-8.0, 1.0, -3.0, 0.5, -2.0]
    lo, hi = cl.bootstrap_mean_ci(values, n_boot=2000, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(values), size=(2000, len(values)))
    means = sorted(sum(values[j] for j in row) / len(values) for row in idx)
    assert lo == pytest.approx(np.quantile(means, 0.025)) and hi == pytest.approx(np.quantile(means, 0.975))
    assert min(values) <= lo < sum(values) / len(values) < hi <= max(values)


def test_wilson_interval_and_binomial_p_against_slow_oracles():
    for hits, n in product(range(0, 9), range(1, 9)):
        if hits > n:
            continue
        lo, hi = cl.wilson_interval(hits, n)
        # Oracle: the Wilson interval is the set of p whose score test |p̂ − p| <= z·sqrt(p(1−p)/n) accepts.
        grid = [i / 20000 for i in range(20001)]
        accepted = [p for p in grid if abs(hits / n - p) <= 1.959963984540054 * math.sqrt(p * (1 - p) / n) + 1e-12]
        assert lo == pytest.approx(min(accepted), abs=1e-4) and hi == pytest.approx(max(accepted), abs=1e-4)
        p = 1 / 3
        brute = sum(1 for outcome in product([0, 1, 2], repeat=n) if sum(x == 0 for x in outcome) >= hits) / 3**n
        assert cl.binomial_p_at_least(hits, n, p) == pytest.approx(brute)


@pytest.mark.parametrize(
    "counts, expected",
    [
        ([30, 30, 25, 20, 5, 0], cl.HOLDS),  # 105 of 110 in layers 0-3 of 6, against 4/6 uniform
        ([0, 2, 3, 5, 40, 60], cl.FAILS),  # the demo's shape: heaviest in the last layers
        ([10, 12, 9, 11, 5, 6], cl.NOT_SIGNIFICANT),  # 42 of 53 (79%) vs 67%: the CI reaches below 67%
    ],
)
def test_shallow_to_middle_layers(counts, expected):
    # Without the pools (a set that does not record its model's shape) every layer counts as the same size.
    claim = cl.layer_claim(numbers(general_layers=counts))
    assert claim.verdict == expected
    assert (
        claim.value == pytest.approx(100 * (sum(counts[:4]) / sum(counts) - 4 / 6))
        and "layers 0–3 of 6" in claim.number
        and "67%" in claim.number
        and "uniform spread" in claim.number
    )


def test_missing_experiments_are_left_out_and_chance_is_flagged():
    assert cl.evaluate_claims(cl.RunNumbers()) == []
    summary = experiment_summary({"blend": (-6.1, -10.4, -1.6)}, original=26.0, n=100)
    claim = _one(
        cl.evaluate_claims(cl.RunNumbers(ablation=summary, kinds=KINDS, chance={"blend": 25.0})), "cultural-drop"
    )
    assert "not above chance" in claim.note
    calm = _one(
        cl.evaluate_claims(cl.RunNumbers(ablation=summary | {}, kinds=KINDS, chance={"blend": 10.0})), "cultural-drop"
    )
    assert calm.note == ""


def test_verdict_rule():
    assert (
        cl.verdict(-3, -1, -1) == cl.HOLDS
        and cl.verdict(1, 3, -1) == cl.FAILS
        and cl.verdict(-1, 1, -1) == cl.NOT_SIGNIFICANT
    )
    assert cl.verdict(0.3, 0.6, +1, null=0.2) == cl.HOLDS and cl.verdict(None, None, +1) == cl.NOT_SIGNIFICANT
    assert cl.verdict(0.0, 0.0, -1) == cl.NOT_SIGNIFICANT  # a CI collapsed on the null is no evidence either way


def test_claims_lines_from_a_run_directory(tmp_path):
    import json

    (tmp_path / "eval/ablation").mkdir(parents=True)
    (tmp_path / "eval/ablation/summary.json").write_text(json.dumps(experiment_summary({"blend": (-6.1, -10.4, -1.6)})))
    lines = cl.claims_lines(tmp_path, manifest={})
    assert lines[0] == "What holds and what does not:"
    # The box's first line is the overall verdict (no NLU benchmark was tested, so it cannot be told apart).
    assert lines[1].startswith("  Overall: inconclusive: the cultural drop beyond random sets holds")
    assert lines[2].startswith("    decided by: Suppressing the culture-general neurons lowers cultural accuracy")
    assert lines[3].split()[0] == "holds" and "[blend (heldout)]" in lines[3] and "-6.1 [-10.4, -1.6]" in lines[3]
    assert cl.claims_lines(tmp_path / "nothing", manifest={}) == []


def measured_block(rng, n, m, target_flip, random_flip=0.04):
    """An ablation block as compare_to_random writes it, from 0/1 scores of n items and m random sets."""
    from culture_neurons.evaluation.metrics import compare_to_random, mean_ci

    original = (rng.random(n) < 0.7).astype(float)
    flip = lambda p: np.where(rng.random(n) < p, 0.0, original)
    target = flip(target_flip)
    randoms = np.stack([flip(random_flip) for _ in range(m)])
    return {
        "original": mean_ci(original, 100),
        "target": mean_ci(target, 100),
        **compare_to_random(original, target, randoms, n_boot=300),
    }


def test_vs_random_claims_use_the_rank_p_and_the_two_level_ci():
    rng = np.random.default_rng(5)
    many = measured_block(rng, 400, 20, 0.3)
    claim = _one(cl.cultural_drop_claims(numbers(ablation={"results": {"blend": {"heldout": many}}})), "cultural-drop")
    two = many["excess_ci_two_level"]
    assert (claim.ci_low, claim.ci_high) == (two["ci_low"], two["ci_high"]) and claim.verdict == cl.HOLDS
    assert claim.rank == 1 and claim.m_random == 20 and claim.p == pytest.approx(1 / 21)
    assert "1st of 21 (p_mc 0.048)" in claim.number and claim.mde == many["mde"] and claim.p_test == cl.RANK_TEST
    # The same drop against 3 random sets: the CI is below 0, but the rank p cannot go below 1/4.
    few = measured_block(rng, 400, 3, 0.3)
    weak = _one(cl.cultural_drop_claims(numbers(ablation={"results": {"blend": {"heldout": few}}})), "cultural-drop")
    assert weak.ci_high < 0 and weak.verdict == cl.NOT_SIGNIFICANT and "too few random sets (3)" in weak.reading


def test_the_table_adjusts_its_p_values_with_holm():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(8)
    summary = {
        "results": {
            "blend": {"heldout": measured_block(rng, 400, 20, 0.3)},
            "commonsenseqa": {"heldout": measured_block(rng, 400, 20, 0.04)},
        }
    }
    checked = cl.evaluate_claims(numbers(ablation=summary, general_layers=[0, 2, 3, 5, 40, 60]))
    with_p = [c for c in checked if c.p is not None]
    assert len(with_p) == 3 == len(checked)
    expected = multipletests([c.p for c in with_p], method="holm")[1]
    assert [c.p_holm for c in with_p] == pytest.approx(list(expected))
    drop = _one(checked, "cultural-drop")
    # 1/21 alone is significant; second smallest of 3 p-values, Holm doubles it: the verdict is decided on that.
    assert drop.p == pytest.approx(1 / 21) and drop.p_holm == pytest.approx(2 / 21)
    assert drop.ci_high < 0 and drop.verdict == cl.NOT_SIGNIFICANT
    nlu = _one(checked, "nlu-spared")
    assert nlu.effect == "an NLU excess drop" and nlu.mde == summary["results"]["commonsenseqa"]["heldout"]["mde"]
    lines = cl.format_claim(drop)
    assert "Holm p" in lines and "ranks 1st of 21 among random sets" in lines


def test_run_wide_claims_have_a_library_p_and_a_power():
    from scipy.stats import binomtest, ttest_1samp

    layers = cl.layer_claim(numbers(general_layers=[10, 12, 9, 11, 5, 6]))
    assert layers.p == pytest.approx(binomtest(42, 53, 4 / 6, alternative="greater").pvalue)
    assert layers.unit == "points" and 0 < layers.mde < 100 / 3 and "an excess share in layers 0–3" in layers.reading
    summary = cross_summary([True, True, False, True])
    own = cl.own_country_claim(numbers(cross_culture=summary))
    rows = summary["results"]["rows"].values()
    excess = [r["diagonal"] - r["off_diagonal_mean"] for r in rows]
    assert own.p == pytest.approx(ttest_1samp(excess, 0.0, alternative="less").pvalue)
    assert own.n == 4 and own.n_unit == "countries" and own.mde > 0
