"""The exclusion filter (``exclude=[(table, r)]``, ``--exclude TABLE[:r]``) against a list-based oracle."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.errors import InputError, TableError
from culture_neurons.selection import NeuronSet, select_general, select_specific, select_specific_many
from tests.selection_helpers import as_rows, oracle_general, oracle_specific, synthetic_table

COUNTRIES = ["China", "Iran", "Mexico", "Spain"]
GENERAL = dict(
    t_mlp=0.3, t_attn=0.2, r=0.1, mlp_sites=("mlp.gate", "mlp.up"), attn_sites=("attn.q", "attn.k", "attn.v")
)
SPECIFIC = dict(t=0.3, r=0.1, z=-0.5, sites=("mlp.gate", "attn.q", "attn.k", "attn.v"))


def tables(seed, integer=False):
    ds = [synthetic_table(COUNTRIES, seed=seed, integer=integer, dataset="blend", counts=[3, 5, 2, 4])]
    cs = [
        synthetic_table(COUNTRIES, seed=seed + 1, integer=integer, control=True, dataset="control", counts=[2, 2, 3, 1])
    ]
    crc = synthetic_table([*COUNTRIES, "USA"], seed=seed + 2, integer=integer, dataset="countryrc")
    nlu = synthetic_table(["all"], seed=seed + 3, integer=integer, dataset="commonsenseqa")
    qnli = synthetic_table(["all", "x"], seed=seed + 4, integer=integer, dataset="qnli")
    return ds, cs, crc, nlu, qnli


def close_rows(got, want):
    assert [r[:3] for r in got] == [r[:3] for r in want]
    for g, w in zip(got, want):
        assert g[3] == pytest.approx(w[3], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("rs", [(0.1,), (0.3, 0.05), (0.0,), (1.0,)])
def test_general_exclusion_matches_the_oracle(seed, integer, rs):
    ds, cs, crc, nlu, qnli = tables(seed * 7, integer)
    exclude = list(zip([nlu, qnli], rs))
    for use_crc in (crc, None):
        got = select_general(ds, cs, use_crc, **GENERAL, exclude=exclude)
        close_rows(as_rows(got), oracle_general(ds, cs, use_crc, **GENERAL, exclude=exclude))
    plain = select_general(ds, cs, crc, **GENERAL)
    assert set(got.neurons) <= set(select_general(ds, cs, None, **GENERAL).neurons)
    if rs == (0.3, 0.05):  # the filter bites: the same call without it keeps more
        assert len(got) < len(select_general(ds, cs, None, **GENERAL))
    if rs == (1.0,):
        assert len(select_general(ds, cs, crc, **GENERAL, exclude=exclude)) == 0
    if rs == (0.0,):
        assert select_general(ds, cs, crc, **GENERAL, exclude=exclude).neurons == plain.neurons


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("rs", [(0.1,), (0.25, 0.1)])
def test_specific_exclusion_matches_the_oracle(seed, integer, rs):
    ds, cs, crc, nlu, qnli = tables(seed * 11 + 3, integer)
    exclude = list(zip([nlu, qnli], rs))
    sets = select_specific_many(ds, cs, crc, COUNTRIES, **SPECIFIC, exclude=exclude)
    for country in COUNTRIES:
        close_rows(as_rows(sets[country]), oracle_specific(ds, cs, crc, country, **SPECIFIC, exclude=exclude))
    single = select_specific(ds, cs, crc, "Iran", **SPECIFIC, exclude=exclude)
    assert single.neurons == sets["Iran"].neurons


def test_exclusion_generalises_the_countryrc_rule():
    """For the general rule, excluding by the CountryRC table is the CountryRC step itself."""
    ds, cs, crc, _, _ = tables(5)
    by_rule = select_general(ds, cs, crc, **GENERAL)
    by_exclude = select_general(ds, cs, None, **{**GENERAL, "r": 0.5}, exclude=[(crc, GENERAL["r"])])
    assert by_rule.neurons == by_exclude.neurons
    assert (
        sum(p["countryrc_excluded"] for p in by_rule.params["pools"])
        == sum(p["exclude_dropped"] for p in by_exclude.params["pools"])
        > 0
    )


def test_exclusion_is_recorded_only_when_used():
    ds, cs, crc, nlu, _ = tables(9)
    plain = select_general(ds, cs, crc, **GENERAL)
    assert "exclude" not in plain.params and "exclude_tables" not in plain.sources
    assert all("exclude_dropped" not in p for p in plain.params["pools"])
    ex = select_general(ds, cs, crc, **GENERAL, exclude=[(nlu, 0.2)])
    assert ex.params["exclude"] == [{"table": "exclude[0] ('commonsenseqa')", "r": 0.2}]
    assert ex.sources["exclude_tables"][0]["sha256"] == nlu.content_hash()
    assert select_general(ds, cs, crc, **GENERAL, exclude=(nlu, 0.2)).neurons == ex.neurons  # one bare pair


def test_bad_exclusions_are_one_line_errors():
    ds, cs, crc, nlu, _ = tables(2)
    with pytest.raises(InputError, match=r"exclude\[0\] r must be a fraction"):
        select_general(ds, cs, crc, exclude=[(nlu, 1.5)])
    with pytest.raises(InputError, match="list of"):
        select_general(ds, cs, crc, exclude=nlu)
    with pytest.raises(InputError, match=r"exclude\[1\] must be a \(ScoreTable, r\) pair"):
        select_general(ds, cs, crc, exclude=[(nlu, 0.1), "nlu.safetensors"])
    foreign = synthetic_table(["all"], config="cfg-b", model="other/model")
    with pytest.raises(TableError, match=r"another model used for selection: exclude\[0\]"):
        select_specific(ds, cs, crc, "Iran", exclude=[(foreign, 0.1)])


def test_cli_exclude(tmp_path):
    ds, cs, crc, nlu, qnli = tables(4)
    paths = {
        name: str(t.save(tmp_path / f"{name}.safetensors"))
        for name, t in [("d", ds[0]), ("c", cs[0]), ("crc", crc), ("nlu", nlu), ("qnli", qnli)]
    }
    base = ["-d", paths["d"], "-c", paths["c"], "--countryrc", paths["crc"], "--r", "0.1"]
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "select",
            "general",
            *base,
            "--t-mlp",
            "0.3",
            "--t-attn",
            "0.2",
            "--mlp-sites",
            "mlp.gate,mlp.up",
            "--exclude",
            paths["nlu"],
            "--exclude",
            paths["qnli"] + ":0.05",
            "-o",
            str(tmp_path / "g.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    want = select_general(ds, cs, crc, **GENERAL, exclude=[(nlu, 0.1), (qnli, 0.05)])
    assert NeuronSet.load(tmp_path / "g.json").neurons == want.neurons
    res = runner.invoke(
        cli,
        [
            "select",
            "specific",
            *base,
            "--t",
            "0.3",
            "--z",
            "-0.5",
            "--country",
            "Iran",
            "--exclude",
            paths["nlu"] + ":0.25",
            "-o",
            str(tmp_path / "iran.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        NeuronSet.load(tmp_path / "iran.json").neurons
        == select_specific(ds, cs, crc, "Iran", **SPECIFIC, exclude=[(nlu, 0.25)]).neurons
    )
    res = runner.invoke(
        cli, ["select", "general", *base, "--exclude", paths["nlu"] + ":7", "-o", str(tmp_path / "x.json")]
    )
    assert res.exit_code == 2 and "r must be a fraction" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["select", "general", *base, "--exclude", paths["nlu"], "-o", paths["nlu"]])
    assert res.exit_code == 2 and "is also the input --exclude" in res.output
