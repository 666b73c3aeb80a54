"""Stability selection: frequencies against a plain loop, the Meinshausen–Bühlmann bound against a simulation
with known null units, the complementary halves, the config key that makes the stable set the run's general set,
and the stable sets validate writes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from culture_neurons import ScoreTable
from culture_neurons.errors import ConfigError, InputError
from culture_neurons.selection import NeuronSet, select_general, select_specific_many
from culture_neurons.selection.options import StabilityOptions
from culture_neurons.selection.stability import (
    Resample,
    complementary_halves,
    jaccard,
    mb_bound,
    stable_general,
    stable_set,
    stable_specific_many,
)
from tests.selection_helpers import synthetic_table

GROUPS = ["Iran", "Mexico", "Spain"]
RULE = {"t_mlp": 0.2, "t_attn": 0.1, "r": 0.05}


def _correlated_resamples(k: int, noise: float = 0.7) -> list[Resample]:
    """K tables sharing one signal plus independent noise, so that frequencies spread over (0, 1]."""
    base = synthetic_table(GROUPS, seed=1)
    crc = synthetic_table(GROUPS, seed=2)
    control = synthetic_table(GROUPS, seed=3, control=True)
    out = []
    for i in range(k):
        noisy = synthetic_table(GROUPS, seed=10 + i)
        scores = {s: base.scores[s] + noise * noisy.scores[s] for s in base.scores}
        table = ScoreTable(scores, base.counts, base.prob_sums, base.groups, base.meta)
        out.append(Resample([table], [control], crc, name=f"r{i}"))
    return out


def _keys(ns: NeuronSet) -> set[tuple[str, int, int]]:
    return {(n.site, n.layer, n.index) for n in ns.neurons}


# -- frequencies and the kept set ------------------------------------------------------------


@pytest.mark.parametrize(("k", "pi"), [(5, 0.6), (6, 0.75), (4, 1.0)])
def test_frequencies_and_kept_set_match_a_plain_loop(k, pi):
    resamples = _correlated_resamples(k)
    result = stable_general(resamples, pi, **RULE)
    counts: dict[tuple[str, int, int], int] = {}
    for rs in resamples:
        for key in _keys(select_general(rs.datasets, rs.controls, rs.countryrc, **RULE)):
            counts[key] = counts.get(key, 0) + 1
    rows = {(r["site"], r["layer"], r["index"]): r for r in result.frequency_rows()}
    assert rows.keys() == counts.keys()
    for key, c in counts.items():
        assert rows[key]["frequency"] == pytest.approx(c / k)
        assert rows[key]["stable"] == (c / k >= pi - 1e-12)
    kept = {key for key, c in counts.items() if c / k >= pi - 1e-12}
    assert _keys(result.set) == kept
    assert 0 < len(kept) < len(counts)  # the case is not trivial: some neurons kept, some not
    for n in result.set.neurons:
        assert n.score == pytest.approx(counts[(n.site, n.layer, n.index)] / k)  # the score is the frequency


def test_the_kept_set_is_ordered_by_frequency_within_each_pool():
    ns = stable_general(_correlated_resamples(5), 0.6, **RULE).set
    mlp = [n.score for n in ns.neurons if n.site.startswith("mlp.")]
    assert mlp == sorted(mlp, reverse=True)
    assert ns.kind == "stable:general"
    assert [p["sites"] for p in ns.params["pools"]] == [["mlp.gate"], ["attn.q", "attn.k", "attn.v"]]


def test_the_bound_is_the_formula_per_pool_summed():
    resamples = _correlated_resamples(6)
    pi = 0.7
    result = stable_general(resamples, pi, **RULE)
    sets = [select_general(rs.datasets, rs.controls, rs.countryrc, **RULE) for rs in resamples]
    layers = 3
    expected = 0.0
    for sites in (("mlp.gate",), ("attn.q", "attn.k", "attn.v")):
        p = layers * sum(synthetic_table(GROUPS).scores[s].shape[1] for s in sites)
        q = sum(sum(1 for n in ns.neurons if n.site in sites) for ns in sets) / len(sets)
        expected += q * q / ((2 * pi - 1) * p)
    assert result.bound == pytest.approx(expected)
    assert result.set.params["stability"]["bound"] == pytest.approx(expected)
    assert result.set.params["stability"]["min_count"] == math.ceil(pi * 6)


def test_plain_set_comparison_is_recorded():
    resamples = _correlated_resamples(4)
    rs = resamples[0]
    plain = select_general(rs.datasets, rs.controls, rs.countryrc, **RULE)
    result = stable_general(resamples, 0.75, **RULE, plain=plain)
    rec = result.set.params["stability"]["plain"]
    assert rec["size"] == len(plain) and rec["jaccard"] == pytest.approx(jaccard(result.set, plain))
    inter = len(_keys(result.set) & _keys(plain))
    assert rec["jaccard"] == pytest.approx(inter / len(_keys(result.set) | _keys(plain)))
    assert result.summary(plain)["jaccard_plain"] == rec["jaccard"]


def test_specific_stable_sets_keep_the_country_kind():
    resamples = _correlated_resamples(4)
    out = stable_specific_many(resamples, 0.75, t=0.2, z=0.0)
    assert set(out) == set(GROUPS)
    per = [select_specific_many(rs.datasets, rs.controls, rs.countryrc, t=0.2, z=0.0) for rs in resamples]
    for c, result in out.items():
        assert result.set.kind == f"specific:{c}"
        assert result.set.params["rule"] == "stable:specific"
        counts: dict[tuple[str, int, int], int] = {}
        for sets in per:
            for key in _keys(sets[c]):
                counts[key] = counts.get(key, 0) + 1
        assert _keys(result.set) == {key for key, n in counts.items() if n >= 3}


def test_bad_inputs_are_refused():
    resamples = _correlated_resamples(2)
    with pytest.raises(InputError, match="pi must be a fraction above 0.5"):
        stable_general(resamples, 0.5, **RULE)
    with pytest.raises(InputError, match="at least 2 resamples"):
        stable_general(resamples[:1], 0.6, **RULE)
    with pytest.raises(InputError, match="at least 2 resamples"):
        stable_general([], 0.6, **RULE)
    with pytest.raises(InputError, match="even"):
        StabilityOptions(resamples=3).check()
    with pytest.raises(InputError, match="blocks give only 1"):
        StabilityOptions(resamples=4, blocks=2).check()
    StabilityOptions().check()


# -- the bound against a simulation -------------------------------------------------------------

P, TRUE, WIDTH = 100, 5, 50  # 2 layers x 50 channels of one site; units 0..4 carry a real effect


def _half_table(values: torch.Tensor) -> ScoreTable:
    """A one-group table whose mlp.gate scores are the sums of ``values`` ([examples, P]) over examples."""
    scores = {"mlp.gate": values.sum(0).reshape(2, WIDTH, 1)}
    meta = {"model": {"name_or_path": "sim", "config_sha256": "sim"}, "options": {"control": False}}
    return ScoreTable(scores, torch.tensor([values.shape[0]]), torch.zeros(1, dtype=torch.float64), ["X"], meta)


def _control() -> ScoreTable:
    meta = {"model": {"name_or_path": "sim", "config_sha256": "sim"}, "options": {"control": True}}
    return ScoreTable(
        {"mlp.gate": torch.zeros(2, WIDTH, 1)}, torch.tensor([1]), torch.zeros(1, dtype=torch.float64), ["X"], meta
    )


def _simulate(k: int, pi: float, q: int, sims: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean null units kept, mean true units kept, and the mean bound, over ``sims`` data sets.

    Each data set: 40 examples, per-example scores N(0, 1) for the null units (exchangeable) and
    N(1.5, 1) for the true ones. Each resample is a random half of the examples, drawn in
    complementary pairs; the rule keeps the top q units by the half's score.
    """
    g = torch.Generator().manual_seed(seed)
    control = _control()
    nulls = trues = bound = 0.0
    for _ in range(sims):
        values = torch.randn(40, P, generator=g)
        values[:, :TRUE] += 1.5
        resamples = []
        for _pair in range(k // 2):
            perm = torch.randperm(40, generator=g)
            for half in (perm[:20], perm[20:]):
                resamples.append(Resample([_half_table(values[half])], [control], None))
        result = stable_general(resamples, pi, t_mlp=q / P, t_attn=0.0, r=0.0, attn_sites=())
        flat = {n.layer * WIDTH + n.index for n in result.set.neurons}
        nulls += sum(1 for u in flat if u >= TRUE)
        trues += sum(1 for u in flat if u < TRUE)
        bound += result.bound
    return nulls / sims, trues / sims, bound / sims


def test_bound_holds_where_it_is_nearly_tight():
    # One complementary pair and pi = 1: a null unit is kept when both independent halves select it, so
    # E[V] = (q - s)^2 / (p - s) = 225 / 95 = 2.37 against the bound q^2 / p = 4 (a 1.7x margin). Keeping
    # a unit selected in either half (pi = 0.5) would keep about 2 x 15 - 2.4 = 27.6 nulls.
    null_kept, true_kept, bound = _simulate(k=2, pi=1.0, q=20, sims=300)
    assert bound == pytest.approx(mb_bound(20, P, 1.0)) == pytest.approx(4.0)
    assert null_kept <= bound
    assert null_kept == pytest.approx(225 / 95, abs=0.5)  # the simulation is the one the bound is about
    assert true_kept > 4.5


def test_bound_holds_with_many_resamples():
    null_kept, true_kept, bound = _simulate(k=10, pi=0.6, q=20, sims=60, seed=1)
    assert bound == pytest.approx(20 * 20 / (0.2 * P))
    assert null_kept <= bound
    assert true_kept > 4.5  # the true units survive resampling
    assert null_kept < 20 - TRUE  # and stability removes most of the nulls a single selection keeps


def test_stable_set_needs_the_pools_to_cover_the_sets():
    resamples = _correlated_resamples(2)
    sets = [select_general(rs.datasets, rs.controls, rs.countryrc, **RULE) for rs in resamples]
    with pytest.raises(InputError, match="outside the pools"):
        stable_set(sets, [("mlp", ("mlp.gate",))], 0.6)


# -- complementary halves ---------------------------------------------------------------------


def test_complementary_halves_are_distinct_pairs_and_deterministic():
    halves = complementary_halves(8, 20, seed=3)
    assert halves == complementary_halves(8, 20, seed=3)
    assert halves != complementary_halves(8, 20, seed=4)
    assert len(halves) == 20
    pairs = set()
    for a, b in zip(halves[::2], halves[1::2]):
        assert len(a) == len(b) == 4 and sorted(a + b) == list(range(8))
        pairs.add(frozenset((a, b)))
    assert len(pairs) == 10
    assert len(complementary_halves(4, 6)) == 6  # all 3 pairs of 4 blocks
    with pytest.raises(InputError, match="blocks give only 3"):
        complementary_halves(4, 8)


# -- the pipeline and validate ---------------------------------------------------------------------

STABLE = {"resamples": 2, "pi": 0.6, "blocks": 2, "seed": 0}


def test_the_config_key_is_checked_and_round_trips():
    from culture_neurons.pipeline.config import load_config, to_toml
    from tests.pipeline_helpers import tiny_run_config

    config = load_config(tiny_run_config("m", "r", select={"general": {"stability": STABLE}}))
    assert config.select.general.stability == StabilityOptions(**STABLE)
    assert "stability" not in config.select.general.kwargs()
    assert load_config(config).select.general.stability == config.select.general.stability
    assert "[select.general.stability]" in to_toml(config)
    with pytest.raises(ConfigError, match="'select.specific.stability'.*pi"):
        load_config(tiny_run_config("m", "r", select={"specific": {"stability": {"pi": 0.4}}}))


@pytest.mark.integration
def test_the_config_key_makes_the_stable_set_the_run_general_set(tmp_path):
    from culture_neurons.pipeline import run_pipeline
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    model = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "run"
    config = tiny_run_config(
        model,
        out,
        # thresholds above the tiny run's, so that the two halves of 9 questions share neurons
        select={"general": {"t_mlp": 0.2, "t_attn": 0.1, "stability": STABLE}, "specific": {"stability": STABLE}},
        evaluate={"experiments": ["ablation"]},
    )
    run_pipeline(config, progress=False)
    general = NeuronSet.load(out / "neurons" / "general.json")
    assert general.kind == "stable:general"
    stab = general.params["stability"]
    assert stab["resamples"] == 2 and stab["pi"] == 0.6 and stab["bound"] >= 0 and "plain" in stab
    # the two halves' sets, from the block tables the run kept: the stable set is exactly their intersection
    blocks = sorted((out / "scores" / "blocks" / "demo-culture").glob("*.safetensors"))
    assert [p.name for p in blocks] == ["0-of-2-seed0.safetensors", "1-of-2-seed0.safetensors"]
    halves = [ScoreTable.load(p) for p in blocks]
    assert (
        sum(t.num_examples for t in halves)
        == ScoreTable.load(out / "scores" / "score-demo-culture.safetensors").num_examples
    )
    control = ScoreTable.load(out / "scores" / "control-demo-control.safetensors")
    crc = ScoreTable.load(out / "scores" / "countryrc-countryrc.safetensors")
    rule = {"t_mlp": 0.2, "t_attn": 0.1}
    sets = [select_general([t], [control], crc, **rule) for t in halves]
    assert _keys(general) == _keys(sets[0]) & _keys(sets[1])
    assert len(general) > 0
    # the experiments ran on it: random sets of its size, and the ablation's general condition (neurons/general.json)
    assert len(NeuronSet.load(out / "neurons" / "random-0.json")) == len(general)
    summary = json.loads((out / "eval" / "ablation" / "summary.json").read_text())
    assert "suppress:general" in summary["config"]["conditions"]
    for path in (out / "neurons").glob("specific-*.json"):
        ns = NeuronSet.load(path)
        assert ns.kind.startswith("specific:") and ns.params["rule"] == "stable:specific"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [k for k in manifest["steps"] if k.startswith("resample:")] == [
        "resample:demo-culture/0-of-2-seed0",
        "resample:demo-culture/1-of-2-seed0",
    ]  # general and specific share the blocks
    # resume: nothing runs again
    result = run_pipeline(config, progress=False)
    assert all(s.status == "skipped" for s in result.steps), [s.key for s in result.steps if s.status != "skipped"]


@pytest.mark.integration
def test_validate_writes_the_stable_sets(tmp_path):
    from culture_neurons.attribution.engine import ScoringOptions
    from culture_neurons.evaluation.scorers import EvalOptions
    from culture_neurons.rundir import slug
    from culture_neurons.validity import SelectionSettings, Study, ValidityData, ValidityOptions, run_validity
    from culture_neurons.validity.folds import cell_name
    from tests.tiny import build_tokenizer, tiny_model
    from tests.validity_helpers import choice_examples

    data = ValidityData(
        identification=choice_examples(9),
        control=choice_examples(9, control=True, dataset="demo-control"),
        culture={"cult": choice_examples(3, templates=("cloze",), split="heldout", dataset="cult")},
        nlu={"nlu": choice_examples(3, groups=("nlu",), templates=("cloze",), split="heldout", dataset="nlu")},
        countryrc=choice_examples(6, templates=("cloze",), dataset="crc"),
    )
    settings = SelectionSettings(t_mlp=0.1, t_attn=0.05, r=0.05, specific_t=0.05, specific_z=0.0)
    study = Study(
        tiny_model("llama", seed=5),
        build_tokenizer(chat_template=False),
        data,
        tmp_path / "validity",
        settings=settings,
        options=ValidityOptions(analyses=("stability",), stable_pi=0.75),
        scoring=ScoringOptions(target="choice", chat_template=False, batch_size=4),
        evaluation=EvalOptions(scorer="loglik", chat_template=False, batch_size=8),
    )
    summary = run_validity(study)
    stable = NeuronSet.load(study.out / "stable.json")
    assert stable.kind == "stable:general"
    cells = study.cells
    assert len(cells) == 4  # 2 folds x 2 templates
    sets = [
        select_general([t], study.controls(tpl), study.countryrc_table, t_mlp=0.1, t_attn=0.05, r=0.05)
        for (_, tpl), t in cells.items()
    ]
    counts: dict[tuple[str, int, int], int] = {}
    for ns in sets:
        for key in _keys(ns):
            counts[key] = counts.get(key, 0) + 1
    assert _keys(stable) == {key for key, c in counts.items() if c >= 3}  # 0.75 of 4 cells
    section = summary["stability"]["stable"]
    assert section["resamples"] == [cell_name(f, t) for f, t in cells]
    g = section["general"]
    assert g["size"] == len(stable) and g["bound"] == pytest.approx(stable.params["stability"]["bound"])
    assert g["plain_size"] == len(study.default_set)
    assert g["jaccard_plain"] == pytest.approx(jaccard(stable, study.default_set))
    assert summary["stability"]["headline"]["stable_size"] == len(stable)
    assert "stable across the cells" in summary["stability"]["reading"]
    for country, rec in section["specific"].items():
        ns = NeuronSet.load(study.out / f"stable-{slug(country)}.json")
        assert ns.kind == f"specific:{country}" and rec["size"] == len(ns)
    assert set(section["specific"]) == {"Japan", "Mexico", "Spain"}
    rows = (study.out / "stable.csv").read_text().splitlines()
    assert rows[0] == "site,layer,index,frequency,stable,in_plain" and len(rows) == len(counts) + 1
