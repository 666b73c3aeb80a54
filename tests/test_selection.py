"""Selectors against slow per-neuron oracles; NeuronSet files; the reference JSON; bad input."""

from __future__ import annotations

import json

import pytest
import torch

from culture_neurons.errors import CultureNeuronsError, InputError, TableError
from culture_neurons.selection import (
    Neuron,
    NeuronSet,
    select_general,
    select_random,
    select_specific,
    select_specific_many,
)
from tests.selection_helpers import SMALL, as_rows, oracle_general, oracle_specific, synthetic_table

COUNTRIES = ["China", "Iran", "Mexico", "Spain"]


def tables(seed, integer=False, n_datasets=1, shared_control=False):
    ds = [
        synthetic_table(COUNTRIES, seed=seed * 10 + i, integer=integer, dataset=f"d{i}", counts=[3 + i, 5, 2, 4])
        for i in range(n_datasets)
    ]
    n_controls = 1 if shared_control else n_datasets
    cs = [
        synthetic_table(
            COUNTRIES, seed=seed * 10 + 5 + i, integer=integer, control=True, dataset=f"c{i}", counts=[2, 2, 3, 1]
        )
        for i in range(n_controls)
    ]
    crc = synthetic_table(
        ["China", "Iran", "Mexico", "Spain", "USA"], seed=seed * 10 + 9, integer=integer, dataset="countryrc"
    )
    return ds, cs, crc


def close_rows(got, want):
    assert [r[:3] for r in got] == [r[:3] for r in want]
    for g, w in zip(got, want):
        assert g[3] == pytest.approx(w[3], rel=1e-12, abs=1e-12)


GENERAL_CASES = [
    dict(),
    dict(t_mlp=0.2, t_attn=0.1, r=0.15),
    dict(t_mlp=0.5, t_attn=0.3, r=0.4, mlp_sites=("mlp.gate", "mlp.up")),
    dict(t_mlp=0.25, t_attn=0.0, r=0.0, attn_sites=()),
    dict(t_mlp=1.0, t_attn=1.0, r=0.9),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("case", range(len(GENERAL_CASES)))
def test_general_matches_the_oracle(seed, integer, case):
    kwargs = {
        "t_mlp": 0.01,
        "t_attn": 0.002,
        "r": 0.01,
        "mlp_sites": ("mlp.gate",),
        "attn_sites": ("attn.q", "attn.k", "attn.v"),
        **GENERAL_CASES[case],
    }
    ds, cs, crc = tables(seed, integer, n_datasets=1 + seed % 2, shared_control=seed == 2)
    got = select_general(ds, cs, crc, **kwargs)
    want = oracle_general(ds, cs, crc, **kwargs)
    close_rows(as_rows(got), want)
    assert got.kind == "general" and len(got) == len(want)


def test_general_without_countryrc_skips_the_exclusion():
    ds, cs, crc = tables(3, integer=True)
    kw = dict(t_mlp=0.3, t_attn=0.2, r=0.3, mlp_sites=("mlp.gate",), attn_sites=("attn.q", "attn.k", "attn.v"))
    with_crc, without = select_general(ds, cs, crc, **kw), select_general(ds, cs, None, **kw)
    close_rows(as_rows(without), oracle_general(ds, cs, None, **kw))
    assert len(without) == 18 + 9 and len(with_crc) < len(without)
    assert set(with_crc.neurons) <= set(without.neurons)
    assert without.params["countryrc"] is False


def test_ties_are_broken_by_site_layer_index():
    groups = ["China", "Iran"]
    zeros = {s: torch.zeros(2, w, 2) for s, w in SMALL.items()}
    meta = {"model": {"config_sha256": "x"}, "options": {}}
    d = synthetic_table(groups)
    d.scores = {s: t.clone() for s, t in zeros.items()}
    c = synthetic_table(groups, control=True)
    c.scores = {s: t.clone() for s, t in zeros.items()}
    d.meta, c.meta = meta, {**meta, "options": {"control": True}}
    d.scores["attn.k"][1, 2] = 5.0  # one clear winner, then ties everywhere
    got = select_general(
        [d], [c], None, t_mlp=0.1, t_attn=0.1, mlp_sites=("mlp.gate",), attn_sites=("attn.v", "attn.q", "attn.k")
    )
    rows = [(n.site, n.layer, n.index) for n in got.neurons]
    assert rows[:4] == [("mlp.gate", 0, 0), ("mlp.gate", 0, 1), ("mlp.gate", 0, 2), ("mlp.gate", 0, 3)]
    attn = [r for r in rows if r[0].startswith("attn")]
    assert attn == [("attn.k", 1, 2), ("attn.q", 0, 0), ("attn.q", 0, 1)]
    # the same call gives the same set, and an equal set does not depend on the pool's site order
    again = select_general(
        [d], [c], None, t_mlp=0.1, t_attn=0.1, mlp_sites=("mlp.gate",), attn_sites=("attn.q", "attn.k", "attn.v")
    )
    assert again.neurons == got.neurons


SPECIFIC_CASES = [
    dict(),
    dict(t=0.2, r=0.2, z=0.5),
    dict(t=0.3, r=0.0, z=0.0),
    dict(t=0.5, r=0.5, z=-10.0),
    dict(t=0.4, r=0.1, z=1.2),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("case", range(len(SPECIFIC_CASES)))
def test_specific_matches_the_oracle(seed, integer, case):
    kwargs = {
        "t": 0.003,
        "r": 0.01,
        "z": 0.5,
        "sites": ("mlp.gate", "attn.q", "attn.k", "attn.v"),
        **SPECIFIC_CASES[case],
    }
    ds, cs, crc = tables(seed + 4, integer, n_datasets=1 + seed, shared_control=False)
    sets = select_specific_many(ds, cs, crc, COUNTRIES, **kwargs)
    for country in COUNTRIES:
        want = oracle_specific(ds, cs, crc, country, **kwargs)
        close_rows(as_rows(sets[country]), want)
        assert sets[country].kind == f"specific:{country}"
    single = select_specific(ds, cs, crc, "Iran", **kwargs)
    assert single.neurons == sets["Iran"].neurons


def test_specific_z_is_zero_when_countries_agree():
    ds, cs, _crc = tables(7)
    for t in ds:
        t.scores["mlp.gate"][1, 3] = 2.0  # s_c (divided by the total count) equal for every country
    for t in cs:
        t.scores["mlp.gate"][1, 3] = 0.0
    kw = dict(t=1.0, r=0.0, sites=("mlp.gate",))
    keep_zero = select_specific(ds, cs, None, "Mexico", z=0.0, **kw)
    keep_half = select_specific(ds, cs, None, "Mexico", z=0.5, **kw)
    target = ("mlp.gate", 1, 3)
    assert target in [(n.site, n.layer, n.index) for n in keep_zero.neurons]
    assert target not in [(n.site, n.layer, n.index) for n in keep_half.neurons]
    close_rows(as_rows(keep_half), oracle_specific(ds, cs, None, "Mexico", z=0.5, **kw))


def test_random_sets():
    ds, cs, crc = tables(0)
    general = select_general(ds, cs, crc, t_mlp=0.2, t_attn=0.1, r=0.1)
    a, b, a2 = select_random(general, 1), select_random(general, 2), select_random(like=general, seed=1)
    assert a.neurons == a2.neurons and a.neurons != b.neurons
    assert len(a) == len(general) and a.kind == "random:1"
    # the draw keeps the general set's two pools apart
    assert a.site_counts().get("mlp.gate", 0) == general.site_counts()["mlp.gate"]
    attn = lambda s: sum(v for k, v in s.site_counts().items() if k.startswith("attn"))
    assert attn(a) == attn(general)
    assert all(n.score is None for n in a.neurons)
    lm = select_random(general, 3, layer_matched=True)
    for site_group in (("mlp.gate",), ("attn.q", "attn.k", "attn.v")):
        per_layer = lambda s, group=site_group: sum(s.layer_counts(x) for x in group)
        assert torch.equal(per_layer(lm), per_layer(general))
    one_pool = select_random(general, 4, pool=("mlp.gate", "mlp.up", "attn.q", "attn.k", "attn.v"))
    assert len(one_pool) == len(general)
    assert one_pool.sources["like"]["sha256"] == general.content_hash()


def test_random_draw_is_roughly_uniform():
    ds, cs, _ = tables(0)
    like = select_general(ds, cs, None, t_mlp=0.1, t_attn=0.0, attn_sites=())  # 6 of 60 gate neurons
    hits = torch.zeros(3, 20)
    for seed in range(600):
        s = select_random(like, seed)
        hits[s.layers, s.indices] += 1
    expected = 600 * 6 / 60
    assert hits.sum() == 600 * 6
    assert ((hits - expected).abs() < 5 * expected**0.5).all()


def test_neuron_set_round_trip(tmp_path):
    ds, cs, crc = tables(1)
    general = select_general(ds, cs, crc, t_mlp=0.2, t_attn=0.1, r=0.1)
    path = general.save(tmp_path / "g.json")
    back = NeuronSet.load(path)
    assert back.neurons == general.neurons and back.kind == "general"
    assert back.widths == general.widths and back.num_layers == 3
    assert back.params["t_mlp"] == 0.2 and len(back.sources["dataset_tables"][0]["sha256"]) == 64
    assert back.sources["dataset_tables"][0]["sha256"] == ds[0].content_hash()
    assert back.model["config_sha256"] == "cfg-a"
    assert isinstance(back.neurons[0], Neuron)
    with pytest.raises(AttributeError):
        back.neurons[0].layer = 3  # frozen
    rnd = select_random(back, 5)
    assert NeuronSet.load(rnd.save(tmp_path / "r.json")).neurons == rnd.neurons


def test_reference_json_round_trip(tmp_path):
    ds, cs, crc = tables(2)
    general = select_general(ds, cs, crc, t_mlp=0.2, t_attn=0.1, r=0.1)
    path = general.to_reference(tmp_path / "ref.json", model_name="meta-llama/Llama-3.1-8B-Instruct")
    raw = json.loads(path.read_text())
    assert raw["model_name"] == "meta-llama/Llama-3.1-8B-Instruct" and raw["dataset_ids"] == ["d0"]
    first = raw["top_neurons"][0]
    assert set(first) == {"module_name", "layer_idx", "neuron_idx", "attribute_score"}
    assert {r["module_name"] for r in raw["top_neurons"]} <= {
        "mlp.gate_proj",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
    }
    back = NeuronSet.from_reference(path, shape=ds[0])
    assert [(n.site, n.layer, n.index) for n in back.neurons] == [(n.site, n.layer, n.index) for n in general.neurons]
    assert [n.score for n in back.neurons] == pytest.approx([n.score for n in general.neurons])
    assert back.widths == ds[0].widths
    assert NeuronSet.load(path).neurons == back.neurons  # load() recognises the reference format too
    # a published file naming full module paths
    path.write_text(
        json.dumps(
            {
                "model_name": "m",
                "dataset_ids": ["blend"],
                "top_neurons": [
                    {
                        "module_name": "model.layers.2.mlp.up_proj",
                        "layer_idx": 2,
                        "neuron_idx": 7,
                        "attribute_score": 0.5,
                    }
                ],
            }
        )
    )
    assert NeuronSet.from_reference(path).neurons == (Neuron("mlp.up", 2, 7, 0.5),)


def test_bad_neuron_set_files(tmp_path):
    ds, cs, crc = tables(1)
    general = select_general(ds, cs, crc, t_mlp=0.2, t_attn=0.1, r=0.1)
    data = general.to_dict()
    data["neurons"][0]["index"] = 999
    (tmp_path / "oob.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="out-of-range indices"):
        NeuronSet.load(tmp_path / "oob.json")
    data = general.to_dict()
    data["neurons"].append(dict(data["neurons"][0]))
    data["count"] += 1
    (tmp_path / "dup.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="more than once"):
        NeuronSet.load(tmp_path / "dup.json")
    data = general.to_dict()
    data["neurons"].pop()
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="truncated"):
        NeuronSet.load(tmp_path / "short.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(InputError, match="empty"):
        NeuronSet.load(tmp_path / "empty.json")
    with pytest.raises(InputError, match="does not exist"):
        NeuronSet.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text(
        '{"top_neurons": [{"module_name": "self_attn.qkv_proj", "layer_idx": 0, "neuron_idx": 1}]}'
    )
    with pytest.raises(InputError, match="unknown module_name 'self_attn.qkv_proj'"):
        NeuronSet.load(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(
        '{"top_neurons": [{"module_name": "mlp.gate_proj", "layer_idx": "x", "neuron_idx": 1}]}'
    )
    with pytest.raises(InputError, match=r"top_neurons\[0\]"):
        NeuronSet.load(tmp_path / "bad2.json")
    ref = tmp_path / "ref.json"
    general.to_reference(ref)
    with pytest.raises(InputError, match="out-of-range"):
        NeuronSet.from_reference(ref, shape=(3, {**SMALL, "mlp.gate": 2}))


def test_union():
    ds, cs, _crc = tables(1)
    sets = select_specific_many(ds, cs, None, ["China", "Iran"], t=0.2, r=0.0, z=-10)
    both = sets["China"] | sets["Iran"]
    keys = lambda s: {(n.site, n.layer, n.index) for n in s.neurons}
    assert keys(both) == keys(sets["China"]) | keys(sets["Iran"])
    assert len(both) == len(keys(both)) and both.kind == "specific:China+specific:Iran"
    other = synthetic_table(COUNTRIES, num_layers=4)
    foreign = select_general(
        [other], [synthetic_table(COUNTRIES, num_layers=4, control=True)], None, t_mlp=0.1, t_attn=0.1
    )
    with pytest.raises(InputError, match="different models"):
        both | foreign


def test_bad_selection_input():
    ds, cs, crc = tables(0)
    foreign = synthetic_table(COUNTRIES, config="cfg-b", model="other/model", control=True)
    with pytest.raises(TableError, match="a ScoreTable from another model used for selection: control_tables\\[0\\]"):
        select_general(ds, [foreign], crc)
    small = synthetic_table(COUNTRIES, num_layers=2, control=True, config=None)
    with pytest.raises(TableError, match="another model.*shape"):
        select_general(ds, [small], crc)
    with pytest.raises(InputError, match="site\\(s\\) mlp.in not in"):
        select_general(ds, cs, crc, mlp_sites=("mlp.in",))
    with pytest.raises(InputError, match="was scored as a control set"):
        select_general(cs, cs, crc)
    with pytest.raises(InputError, match="one control per dataset"):
        select_general(ds, cs * 2 + cs, crc)
    with pytest.raises(InputError, match="fraction"):
        select_general(ds, cs, crc, t_mlp=1.5)
    with pytest.raises(InputError, match="lists of ScoreTables"):
        select_general(ds[0], cs, crc)
    with pytest.raises(
        InputError, match="a country missing from one table: countryrc_table \\('countryrc'\\) has no group 'Iran'"
    ):
        select_specific(ds, cs, synthetic_table(["China", "Japan"], dataset="countryrc"), "Iran")
    with pytest.raises(
        InputError, match="a country missing from one table: dataset_tables\\[0\\] \\('d0'\\) has no group 'Japan'"
    ):
        select_specific(ds, cs, crc, "Japan")
    short_control = synthetic_table(["China", "Iran"], control=True)
    with pytest.raises(InputError, match="control_tables\\[0\\].*has no group 'Mexico'"):
        select_specific(ds, [short_control], crc, "China")
    empty = NeuronSet([], torch.zeros(0), torch.zeros(0), torch.zeros(0), kind="general", num_layers=3, widths=SMALL)
    with pytest.raises(InputError, match="empty"):
        select_random(empty, 0)
    imported = NeuronSet.from_columns(["mlp.gate"], [0], [1])
    with pytest.raises(InputError, match="shape"):
        select_random(imported, 0)
    assert len(select_random(imported, 0, shape=ds[0])) == 1
    assert issubclass(InputError, CultureNeuronsError)
