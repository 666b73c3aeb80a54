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
    claim = cl.layer_claim(numbers(general_layers=counts))
    assert claim.verdict == expected
    assert (
        claim.value == pytest.approx(sum(counts[:4]) / sum(counts))
        and "layers 0–3 of 6" in claim.number
        and "67%" in claim.number
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
    assert lines[1].split()[0] == "holds" and "[blend (heldout)]" in lines[1] and "-6.1 [-10.4, -1.6]" in lines[1]
    assert cl.claims_lines(tmp_path / "nothing", manifest={}) == []
