"""``culture-neurons select ...``: thin layers that give the same sets as the Python API."""

from __future__ import annotations

import json

from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.rundir import slug
from culture_neurons.selection import NeuronSet, select_general, select_random, select_specific
from tests.selection_helpers import synthetic_table

COUNTRIES = ["China", "Iran", "Mexico"]


def write_tables(tmp_path):
    d = synthetic_table(COUNTRIES, seed=1, widths={"mlp.gate": 300, "attn.q": 200, "attn.k": 100, "attn.v": 100})
    c = synthetic_table(
        COUNTRIES, seed=2, control=True, widths={"mlp.gate": 300, "attn.q": 200, "attn.k": 100, "attn.v": 100}
    )
    crc = synthetic_table(COUNTRIES, seed=3, widths={"mlp.gate": 300, "attn.q": 200, "attn.k": 100, "attn.v": 100})
    paths = [
        d.save(tmp_path / "d.safetensors"),
        c.save(tmp_path / "c.safetensors"),
        crc.save(tmp_path / "crc.safetensors"),
    ]
    return (d, c, crc), [str(p) for p in paths]


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_select_commands_match_the_api(tmp_path):
    (d, c, crc), (dp, cp, crcp) = write_tables(tmp_path)
    res = run(
        [
            "select",
            "general",
            "-d",
            dp,
            "-c",
            cp,
            "--countryrc",
            crcp,
            "-o",
            str(tmp_path / "g.json"),
            "--reference-out",
            str(tmp_path / "g-ref.json"),
        ]
    )
    assert res.exit_code == 0, res.output
    general = NeuronSet.load(tmp_path / "g.json")
    assert general.neurons == select_general([d], [c], crc).neurons and len(general) > 0
    assert "top_neurons" in json.loads((tmp_path / "g-ref.json").read_text())

    res = run(
        [
            "select",
            "specific",
            "-d",
            dp,
            "-c",
            cp,
            "--countryrc",
            crcp,
            "--country",
            "Iran",
            "--t",
            "0.05",
            "-o",
            str(tmp_path / "iran.json"),
        ]
    )
    assert res.exit_code == 0, res.output
    assert NeuronSet.load(tmp_path / "iran.json").neurons == select_specific([d], [c], crc, "Iran", t=0.05).neurons
    res = run(["select", "specific", "-d", dp, "-c", cp, "--countryrc", crcp, "-o", str(tmp_path / "spec")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "spec").iterdir()) == sorted(
        f"specific-{slug(c)}.json" for c in COUNTRIES
    )

    res = run(["select", "random", "--like", str(tmp_path / "g.json"), "--seeds", "3", "-o", str(tmp_path / "rnd")])
    assert res.exit_code == 0, res.output
    r1 = NeuronSet.load(tmp_path / "rnd" / "random-1.json")
    assert r1.neurons == select_random(general, 1).neurons

    res = run(["select", "export", str(tmp_path / "g.json"), "-o", str(tmp_path / "exp.json")])
    assert res.exit_code == 0, res.output
    res = run(["select", "import", str(tmp_path / "exp.json"), "--table", dp, "-o", str(tmp_path / "imp.json")])
    assert res.exit_code == 0, res.output
    assert [(n.site, n.layer, n.index) for n in NeuronSet.load(tmp_path / "imp.json").neurons] == [
        (n.site, n.layer, n.index) for n in general.neurons
    ]


def test_select_errors_are_one_line(tmp_path):
    (_, _, _), (dp, cp, _crcp) = write_tables(tmp_path)
    res = CliRunner().invoke(cli, ["select", "general", "-d", dp, "-c", cp, "-o", str(tmp_path / "g.json")])
    assert res.exit_code == 2 and "--no-countryrc" in res.output
    res = CliRunner().invoke(
        cli,
        [
            "select",
            "specific",
            "-d",
            dp,
            "-c",
            cp,
            "--no-countryrc",
            "--country",
            "Japan",
            "-o",
            str(tmp_path / "j.json"),
        ],
    )
    assert res.exit_code == 2 and "a country missing from one table" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(
        cli,
        [
            "select",
            "general",
            "-d",
            str(tmp_path / "missing.safetensors"),
            "-c",
            cp,
            "--no-countryrc",
            "-o",
            str(tmp_path / "g.json"),
        ],
    )
    assert res.exit_code == 2 and "does not exist" in res.output
