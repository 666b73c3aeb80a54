"""Statistics against random sets (rank, Monte-Carlo p, two-level bootstrap), power (checked by simulation), Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from culture_neurons.analysis import claims as cl
from culture_neurons.analysis import verdicts as vd
from culture_neurons.evaluation.metrics import compare_to_random, mean_ci, paired_change, rank_among_random
from culture_neurons.evaluation.power import (
    detectable_excess,
    detectable_paired,
    detectable_share,
    z_factor,
)


def scores(rng, n, m, target_flip, random_flip=0.05):
    """0/1 scores: original, a target that loses ``target_flip`` of the correct items, ``m`` random sets."""
    original = (rng.random(n) < 0.7).astype(float)
    flip = lambda p: np.where(rng.random(n) < p, 0.0, original)
    return original, flip(target_flip), np.stack([flip(random_flip * (0.5 + rng.random())) for _ in range(m)])


def slow_two_level(o, t, randoms, n_boot, seed):
    """Oracle: the same draws as compare_to_random (items, then random sets), every mean a plain Python loop."""
    rng = np.random.default_rng(seed)
    n, m = len(o), len(randoms)
    items = rng.integers(0, n, size=(n_boot, n))
    sets = rng.integers(0, m, size=(n_boot, m))
    reps = []
    for b in range(n_boot):
        target_change = sum(t[i] - o[i] for i in items[b]) / n
        random_change = 0.0
        for s in sets[b]:
            random_change += sum(randoms[s][i] - o[i] for i in items[b]) / n
        reps.append(target_change - random_change / m)
    excess = (
        sum(t[i] - o[i] for i in range(n)) / n
        - sum(sum(randoms[s][i] - o[i] for i in range(n)) / n for s in range(m)) / m
    )
    mean = sum(reps) / n_boot
    se = math.sqrt(sum((r - mean) ** 2 for r in reps) / (n_boot - 1))
    one = sum(1 for r in reps if r - excess <= excess)
    two = sum(1 for r in reps if abs(r - excess) >= abs(excess))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return excess, lo, hi, se, (1 + one) / (1 + n_boot), (1 + two) / (1 + n_boot)


@pytest.mark.parametrize("target_flip, m", [(0.3, 6), (0.05, 4), (0.0, 2)])
def test_two_level_bootstrap_equals_a_nested_loop(target_flip, m):
    rng = np.random.default_rng(11)
    o, t, randoms = scores(rng, 25, m, target_flip)
    got = compare_to_random(o, t, randoms, n_boot=200, seed=5)["excess_ci_two_level"]
    excess, lo, hi, se, p_one, p_two = slow_two_level(o.tolist(), t.tolist(), randoms.tolist(), 200, 5)
    assert got["value"] == pytest.approx(100 * excess)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(100 * lo), pytest.approx(100 * hi))
    assert got["se"] == pytest.approx(100 * se)
    assert (got["p_one_sided"], got["p_two_sided"]) == (pytest.approx(p_one), pytest.approx(p_two))


def test_two_level_ci_is_wider_than_the_item_ci_when_random_sets_vary_and_equal_with_one_set():
    rng = np.random.default_rng(2)
    n = 300
    o = (rng.random(n) < 0.7).astype(float)
    flip = lambda p: np.where(rng.random(n) < p, 0.0, o)
    spread = np.stack([flip(p) for p in (0.01, 0.2, 0.02, 0.25, 0.0, 0.15)])  # random sets that differ a lot
    res = compare_to_random(o, flip(0.1), spread, n_boot=400, seed=1)
    two, items = res["excess_ci_two_level"], res["difference"]
    assert two["ci_high"] - two["ci_low"] > 1.5 * (items["ci_high"] - items["ci_low"])
    one = compare_to_random(o, flip(0.1), spread[:1], n_boot=400, seed=1)  # one set: nothing to resample
    assert (one["excess_ci_two_level"]["ci_low"], one["excess_ci_two_level"]["ci_high"]) == (
        pytest.approx(one["difference"]["ci_low"]),
        pytest.approx(one["difference"]["ci_high"]),
    )


def test_item_only_numbers_do_not_change_when_the_random_sets_are_resampled_too():
    rng = np.random.default_rng(4)
    o, t, randoms = scores(rng, 40, 5, 0.2)
    res = compare_to_random(o, t, randoms, n_boot=300, seed=9)
    diff = mean_ci(t - randoms.mean(0), n_boot=300, seed=9)  # the same item draws: the generator's first
    assert (res["difference"]["ci_low"], res["difference"]["ci_high"]) == (
        pytest.approx(diff["ci_low"]),
        pytest.approx(diff["ci_high"]),
    )
    change = mean_ci(t - o, n_boot=300, seed=9)
    assert res["change"]["ci_low"] == pytest.approx(change["ci_low"])


def test_rank_and_monte_carlo_p_against_counting():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(1, 30))
        randoms = rng.integers(-5, 3, size=m) / 40  # coarse values: ties with the target happen
        target = float(rng.integers(-6, 3)) / 40
        got = rank_among_random(target, randoms)
        b_drop = sum(1 for r in randoms if r <= target)  # random sets whose drop is at least the target's
        b_rise = sum(1 for r in randoms if r >= target)
        assert got["rank"] == b_drop + 1 and got["p_mc"] == pytest.approx((b_drop + 1) / (m + 1))
        assert got["rank_rise"] == b_rise + 1 and got["p_mc_rise"] == pytest.approx((b_rise + 1) / (m + 1))
        assert got["m_random"] == m and got["p_mc"] >= 1 / (m + 1)
    assert rank_among_random(-0.1, [])["p_mc"] is None


def test_compare_to_random_ranks_the_target_among_its_random_sets():
    rng = np.random.default_rng(1)
    o, t, randoms = scores(rng, 200, 20, 0.4)
    res = compare_to_random(o, t, randoms, n_boot=100)
    assert res["rank"] == 1 and res["m_random"] == 20 and res["p_mc"] == pytest.approx(1 / 21)
    assert res["rank_rise"] == 21 and res["p_mc_rise"] == 1.0
    same = compare_to_random(o, randoms[3], randoms, n_boot=100)  # the target is one of the random sets: a tie
    assert same["p_mc"] >= 2 / 21 and same["p_mc_rise"] >= 2 / 21


def test_mde_is_what_the_parts_say():
    rng = np.random.default_rng(3)
    o, t, randoms = scores(rng, 150, 12, 0.1)
    res = compare_to_random(o, t, randoms, n_boot=50)
    parts = res["mde_parts"]
    diff = t - randoms.mean(0)
    per_set = (randoms - o).mean(1)
    assert parts["sd_items"] == pytest.approx(100 * diff.std(ddof=1))
    assert parts["sd_sets"] == pytest.approx(100 * per_set.std(ddof=1))
    expected = z_factor() * math.sqrt(parts["sd_items"] ** 2 / 150 + parts["sd_sets"] ** 2 / 12)
    assert res["mde"] == pytest.approx(expected) and z_factor() == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert compare_to_random(o, t, randoms[:0], n_boot=50)["mde"] is None


def test_excess_mde_gives_80_percent_power_in_a_simulation():
    """Data with a true excess drop equal to the MDE: the two-level CI excludes 0 in about 80% of runs."""
    n, m, sd_e, sd_u = 80, 20, 0.5, 0.15  # random sets that differ enough for their share of the variance to matter
    # The formula's inputs as the design gives them: per-item SD of target minus the mean random set,
    # and the SD of one random set's mean change (its set effect plus its own item noise).
    mde = detectable_excess(sd_e * math.sqrt(1 + 1 / m), n, math.sqrt(sd_u**2 + sd_e**2 / n), m)
    assert detectable_excess(sd_e * math.sqrt(1 + 1 / m), n) < 0.9 * mde  # items alone would promise too much
    rng = np.random.default_rng(20)
    trials, hits = 400, 0
    for trial in range(trials):
        original = rng.normal(0, 1, n)
        randoms = original + rng.normal(0, sd_u, (m, 1)) + rng.normal(0, sd_e, (m, n))
        target = original - mde + rng.normal(0, sd_e, n)
        res = compare_to_random(original, target, randoms, n_boot=200, seed=trial, scale=1.0)
        hits += res["excess_ci_two_level"]["ci_high"] < 0
    assert 0.73 <= hits / trials <= 0.87  # 3.5 binomial SEs of 400 trials around 0.80
    half = detectable_excess(sd_e * math.sqrt(1 + 1 / m), n, math.sqrt(sd_u**2 + sd_e**2 / n), m, power=0.5)
    assert half == pytest.approx(mde * 1.959964 / z_factor(), rel=1e-5)  # at 50% power the MDE is the critical value


def test_paired_mde_gives_80_percent_power_in_a_simulation():
    n = 12
    mde = detectable_paired(1.0, n)
    rng = np.random.default_rng(7)
    data = rng.normal(mde, 1.0, size=(4000, n))
    power = float((sps.ttest_1samp(data, 0.0, axis=1).pvalue < 0.05).mean())
    assert power == pytest.approx(0.80, abs=0.025)
    # The noncentral t is larger than the normal approximation at small n, and meets it at large n.
    assert mde > detectable_excess(1.0, n)
    assert detectable_paired(1.0, 5000) == pytest.approx(detectable_excess(1.0, 5000), rel=2e-3)
    after = rng.normal(0.1, 0.3, 30)
    change = paired_change(np.zeros(30), after, n_boot=10)
    assert change["mde"] == pytest.approx(100 * detectable_paired(float(after.std(ddof=1)), 30))
    assert paired_change([0.0], [1.0], n_boot=10)["mde"] is None


def test_share_mde_gives_80_percent_power_exactly():
    """The layer claim's test (Wilson CI above p0): its exact binomial power at the detectable share is about 80%."""
    for p0, n in ((0.5, 200), (2 / 3, 400)):
        p1 = detectable_share(p0, n)
        power = sum(sps.binom.pmf(k, n, p1) for k in range(n + 1) if cl.wilson_interval(k, n)[0] > p0)
        assert p1 > p0 and power == pytest.approx(0.80, abs=0.05)
    assert detectable_share(0.5, 0) is None and detectable_share(0.99, 3) == 1.0


def test_wilson_and_binomial_match_the_closed_forms():
    z = cl.Z95
    for hits, n in ((0, 5), (3, 7), (40, 53), (105, 110)):
        p = hits / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = cl.wilson_interval(hits, n)
        assert lo == pytest.approx(max(0.0, centre - half), abs=1e-12)
        assert hi == pytest.approx(min(1.0, centre + half), abs=1e-12)
        tail = sum(math.comb(n, k) * 0.4**k * 0.6 ** (n - k) for k in range(hits, n + 1))
        assert cl.binomial_p_at_least(hits, n, 0.4) == pytest.approx(tail, rel=1e-9, abs=1e-15)


def slow_holm(ps):
    """Holm's step-down adjustment by hand."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - j) * ps[i]))
        out[i] = running
    return out


def claim(p, ci=(-5.0, -1.0), **kw):
    base = vd.Claim("cultural-drop", "t", "s", vd.ci_verdict(*ci, expect=-1), "n", -3.0, *ci, p=p, **kw)
    return vd.finish(base)


def test_holm_adjusts_the_rows_that_have_a_p_and_decides_on_the_adjusted_p():
    ps = [0.01, 0.04, 0.03, None, 0.2]
    done = vd.adjust([claim(p) for p in ps])
    expected = slow_holm([p for p in ps if p is not None])
    assert [c.p_holm for c in done if c.p is not None] == pytest.approx(expected)
    assert done[3].p_holm is None and done[3].verdict == vd.HOLDS  # no p: the CI alone decides
    assert [c.verdict for c in done] == [vd.HOLDS, vd.NOT_SIGNIFICANT, vd.NOT_SIGNIFICANT, vd.HOLDS, vd.NOT_SIGNIFICANT]
    assert claim(0.04).verdict == vd.HOLDS  # alone, 0.04 is significant; among four rows it is not
    assert "Holm p 0.090" in done[1].reading and "the CI is on the predicted side" in done[1].reading


def test_readings_say_what_a_null_result_rules_out():
    ns = (-4.0, 2.0)
    informative = claim(0.4, ns, mde=3.9, effect="an excess drop", n=900, p_test=vd.RANK_TEST, rank=9, m_random=40)
    assert informative.verdict == vd.NOT_SIGNIFICANT
    assert "rules out an excess drop larger than 3.9 points (80% power, n=900 items)" in informative.reading
    few_items = claim(0.4, ns, mde=12.4, effect="an excess drop", n=48, p_test=vd.RANK_TEST, rank=9, m_random=40)
    assert "too few items (n=48) to rule out an excess drop of up to 12.4 points" in few_items.reading
    few_sets = claim(0.25, ns, mde=3.0, effect="an excess drop", n=900, p_test=vd.RANK_TEST, rank=1, m_random=3)
    assert "too few random sets (3)" in few_sets.reading and "cannot go below 1/4" in few_sets.reading
    # The CI alone would say "holds"; the rank among 3 random sets cannot.
    beaten = claim(0.25, (-9.0, -4.0), mde=3.0, effect="an excess drop", p_test=vd.RANK_TEST, rank=1, m_random=3)
    assert beaten.verdict == vd.NOT_SIGNIFICANT and "ranks 1st of 4 among random sets" in beaten.reading
    assert vd.format_rank(3, 20) == "3rd of 21" and [vd.ordinal(k) for k in (1, 2, 11, 12, 13, 22, 101)] == [
        "1st",
        "2nd",
        "11th",
        "12th",
        "13th",
        "22nd",
        "101st",
    ]
