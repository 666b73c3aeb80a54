"""Property-based tests (hypothesis) for ScoreTable arithmetic and the selection rules."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from culture_neurons import ScoreTable
from culture_neurons.selection import select_general, select_specific

GROUPS = ["China", "Iran", "Mexico", "Spain"]
WIDTHS = {"mlp.gate": 12, "attn.q": 8, "attn.k": 4, "attn.v": 4}
MODEL = {"name_or_path": "synthetic", "config_sha256": "abc", "class": "Synthetic"}
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def table(seed: int, ids: list[str], control: bool = False, dataset: str = "d", scale: float = 1.0) -> ScoreTable:
    g = torch.Generator().manual_seed(seed)
    scores = {s: torch.randn(3, w, len(GROUPS), generator=g) * scale for s, w in WIDTHS.items()}
    if control:
        scores = {s: t.abs() for s, t in scores.items()}
    counts = torch.randint(1, 5, (len(GROUPS),), generator=g)
    probs = torch.rand(len(GROUPS), generator=g, dtype=torch.float64) * counts
    meta = {
        "model": MODEL,
        "options": {
            "target": "label",
            "aggregation": "max",
            "control": control,
            "reference_compat": False,
            "dtype": "float32",
        },
        "dataset": dataset,
        "example_ids": ids,
    }
    return ScoreTable(scores, counts, probs, GROUPS, meta)


@FAST
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000), st.floats(1e-3, 1e3))
def test_addition_is_associative_and_commutative(a, b, c, scale):
    x, y, z = table(a, ["a"], scale=scale), table(b, ["b"], scale=scale), table(c, ["c"], scale=scale)
    left, right = (x + y) + z, x + (y + z)
    swapped = y + x
    for s in WIDTHS:
        assert torch.allclose(left.scores[s], right.scores[s], rtol=1e-5, atol=1e-6 * scale)
        assert torch.allclose((x + y).scores[s], swapped.scores[s], rtol=1e-6, atol=1e-7 * scale)
    assert torch.equal(left.counts, right.counts)
    assert torch.allclose(left.prob_sums, right.prob_sums)


@FAST
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=6, unique=True))
def test_sharded_sums_equal_the_whole(seeds):
    """Splitting a set of per-example tables into any two shards and adding gives the same total."""
    parts = [table(s, [f"e{s}"]) for s in seeds]
    whole = parts[0]
    for p in parts[1:]:
        whole = whole + p
    cut = len(parts) // 2
    first, second = parts[0], parts[cut]
    for p in parts[1:cut]:
        first = first + p
    for p in parts[cut + 1 :]:
        second = second + p
    total = first + second
    for s in WIDTHS:
        assert torch.allclose(total.scores[s], whole.scores[s], rtol=1e-5, atol=1e-5)
    assert sorted(total.meta["example_ids"]) == sorted(whole.meta["example_ids"])


def _flat(t: ScoreTable, sites, fn) -> torch.Tensor:
    return torch.cat([fn(t, s).reshape(-1) for s in sites])


@FAST
@given(st.integers(0, 10_000), st.sampled_from([0.05, 0.1, 0.25, 0.5]), st.sampled_from([0.0, 0.1, 0.3]))
def test_general_selection_rules(seed, t, r):
    ds, ctl, crc = (
        table(seed, ["d1"]),
        table(seed + 1, ["c1"], control=True, dataset="c"),
        table(seed + 2, ["r1"], dataset="crc"),
    )
    chosen = select_general([ds], [ctl], crc, t_mlp=t, t_attn=t, r=r)
    for pool in (("mlp.gate",), ("attn.q", "attn.k", "attn.v")):
        general = _flat(ds, pool, lambda tb, s: tb.dataset_score(s).double()) - _flat(
            ctl, pool, lambda tb, s: tb.dataset_score(s).double()
        )
        rc = _flat(crc, pool, lambda tb, s: tb.scores[s].sum(-1).double())
        n = general.numel()
        k, k_rc = math.floor(t * n), math.floor(r * n)
        top = set(torch.argsort(-general, stable=True)[:k].tolist())
        excluded = set(torch.argsort(-rc, stable=True)[:k_rc].tolist())
        keys = []
        offset = 0
        for s in pool:
            w = WIDTHS[s]
            for neuron in chosen.neurons:
                if neuron.site == s:
                    keys.append(offset + neuron.layer * w + neuron.index)
            offset += 3 * w
        assert set(keys) == top - excluded  # exactly the top-t, minus the CountryRC top-r
        assert len(keys) == len(set(keys))


@FAST
@given(st.integers(0, 10_000), st.sampled_from(GROUPS), st.sampled_from([0.0, 0.5, 1.0]))
def test_specific_selection_respects_z(seed, country, z):
    ds, ctl, crc = (
        table(seed, ["d1"]),
        table(seed + 1, ["c1"], control=True, dataset="c"),
        table(seed + 2, ["r1"], dataset="crc"),
    )
    chosen = select_specific([ds], [ctl], crc, country=country, t=0.2, r=0.05, z=z, sites=("mlp.gate", "attn.q"))
    n_ds, n_c = ds.num_examples, ctl.num_examples
    for neuron in chosen.neurons:
        per_country = (
            ds.scores[neuron.site][neuron.layer, neuron.index].double() / n_ds
            - ctl.scores[neuron.site][neuron.layer, neuron.index].double() / n_c
        )
        mine = per_country[GROUPS.index(country)]
        std = per_country.std(unbiased=False)
        zscore = 0.0 if std == 0 else (mine - per_country.mean()) / std
        assert zscore >= z - 1e-9
