"""Files the selection commands write and read: per-group names never collide, outputs never
overwrite inputs, loose group names and huge indices give one-line errors, dropped countries are named."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.data import read_examples
from culture_neurons.errors import InputError
from culture_neurons.rundir import condition_rel, examples_rel, neurons_rel, specific_stem
from culture_neurons.selection import NeuronSet, select_general, select_specific_many
from culture_neurons.selection.cli import specific_paths
from tests.selection_helpers import synthetic_table

TRICKY = [
    "日本",
    "中国",
    "한국",
    "USA",
    "usa",
    "../x",
    "x",
    "South Korea",
    "South_Korea",
    "south-korea",
    "con",
    "a/b",
    "..",
]

WIDTHS = {"mlp.gate": 40, "attn.q": 16, "attn.k": 8, "attn.v": 8}

# Every way a command turns a group name into a file path (one entry per command that writes per-group files).
PER_GROUP_WRITERS = {
    "select specific": lambda g: str(specific_paths("out", [g, "other"])[g]),
    "run: select stage": lambda g: neurons_rel(specific_stem(g)),
    "run: evaluate stage": lambda g: condition_rel("blend", f"suppress:{specific_stem(g)}"),
    "run: export stage": lambda g: examples_rel("score", g),
}


def _inside(root, rel):
    full = os.path.normpath(os.path.join(root, rel))
    return full.startswith(os.path.normpath(root) + os.sep)


@pytest.mark.parametrize("command", PER_GROUP_WRITERS)
def test_no_two_groups_share_a_file(command):
    paths = {g: PER_GROUP_WRITERS[command](g) for g in TRICKY}
    assert len(set(paths.values())) == len(TRICKY), paths
    # also on case-insensitive filesystems (macOS, Windows)
    assert len({p.casefold() for p in paths.values()}) == len(TRICKY), paths
    for g, p in paths.items():
        assert _inside("root", p), (g, p)  # no group escapes the output folder
        name = os.path.basename(p)
        assert name.isascii() and "/" not in name and "\\" not in name and not name.startswith("."), (g, p)


def _tables(tmp_path, groups):
    d = synthetic_table(groups, seed=1, widths=WIDTHS)
    c = synthetic_table(groups, seed=2, control=True, widths=WIDTHS)
    return [str(d.save(tmp_path / "d.safetensors")), str(c.save(tmp_path / "c.safetensors"))]


def test_select_specific_writes_one_file_per_country(tmp_path):
    groups = ["日本", "中国", "한국", "../x", "x", "USA"]
    dp, cp = _tables(tmp_path, groups)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli, ["select", "specific", "-d", dp, "-c", cp, "--no-countryrc", "--z", "-5", "--t", "0.2", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    files = sorted(out.iterdir())
    assert len(files) == len(groups) and not (tmp_path / "x").exists()
    assert sorted(NeuronSet.load(f).kind for f in files) == sorted(f"specific:{g}" for g in groups)


def test_outputs_that_are_inputs_are_refused(tmp_path):
    dp, cp = _tables(tmp_path, ["China", "Iran"])
    g = tmp_path / "g.json"
    runner = CliRunner()
    assert runner.invoke(cli, ["select", "general", "-d", dp, "-c", cp, "--no-countryrc", "-o", str(g)]).exit_code == 0
    before = g.read_bytes()
    cases = [
        ["select", "random", "--like", str(g), "--seed", "1", "-o", str(g)],
        ["select", "export", str(g), "-o", str(g)],
        ["select", "import", str(g), "-o", str(g)],
        ["select", "general", "-d", dp, "-c", cp, "--no-countryrc", "-o", dp],
        [
            "select",
            "general",
            "-d",
            dp,
            "-c",
            cp,
            "--no-countryrc",
            "-o",
            str(tmp_path / "n.json"),
            "--reference-out",
            cp,
        ],
        ["select", "specific", "-d", dp, "-c", cp, "--no-countryrc", "--country", "Iran", "-o", cp],
    ]
    for args in cases:
        res = runner.invoke(cli, args)
        assert res.exit_code == 2 and "is also the input" in res.output and "Traceback" not in res.output, args
    assert g.read_bytes() == before
    os.symlink(g, tmp_path / "link.json")
    res = runner.invoke(cli, ["select", "random", "--like", str(tmp_path / "link.json"), "--seed", "0", "-o", str(g)])
    assert res.exit_code == 2 and "is also the input --like" in res.output


def test_loose_group_names_in_examples(tmp_path):
    def write(groups):
        path = tmp_path / "ex.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": f"q{i}", "prompt": "p", "answer": "A", "group": g}) + "\n"
                for i, g in enumerate(groups)
            ),
            encoding="utf-8",
        )
        return path

    with pytest.raises(InputError, match=r"ex.jsonl:2: field 'group' is empty"):
        read_examples(write(["Spain", "  "]))
    with pytest.raises(InputError, match=r"ex.jsonl:3: group 'usa' differs from 'USA' \(line 1\) only by case"):
        read_examples(write(["USA", "Spain", "usa"]))
    with pytest.raises(InputError, match=r"group 'Spain ' differs from 'Spain'"):
        read_examples(write(["Spain", "Spain "]))
    assert len(read_examples(write(["日本", "中国", "한국", "USA"]))) == 4


@pytest.mark.parametrize(
    "groups, message",
    [
        (["China", ""], "an empty group name"),
        (["USA", "usa"], "'USA' and 'usa' differ only by case"),
        (["Iran", " Iran"], "differ only by case or surrounding whitespace"),
    ],
)
def test_loose_group_names_in_tables(groups, message):
    d = synthetic_table(groups, widths=WIDTHS)
    c = synthetic_table(groups, control=True, widths=WIDTHS)
    with pytest.raises(InputError, match=message):
        select_general([d], [c], None)


@pytest.mark.parametrize("field", ["layer", "index"])
def test_huge_indices_are_one_line_errors(tmp_path, field):
    d = synthetic_table(["China", "Iran"], widths=WIDTHS)
    c = synthetic_table(["China", "Iran"], control=True, widths=WIDTHS)
    data = select_general([d], [c], None, t_mlp=0.2, t_attn=0.2).to_dict()
    data["neurons"][0][field] = 2**70
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=rf"neuron #0 needs site, layer and index.*{field}: out of range"):
        NeuronSet.load(path)
    data = {"top_neurons": [{"module_name": "mlp.gate_proj", "layer_idx": 0, "neuron_idx": 2**70}]}
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"top_neurons\[0\].*out of range"):
        NeuronSet.load(path)
    with pytest.raises(InputError, match="fit in 64 bits"):
        NeuronSet.from_columns(["mlp.gate"], [0], [2**70])
    res = CliRunner().invoke(cli, ["select", "export", str(path), "-o", str(tmp_path / "e.json")])
    assert res.exit_code == 2 and "out of range" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_huge_but_valid_indices_do_not_collide():
    ns = NeuronSet.from_columns(["mlp.gate", "mlp.gate"], [0, 0], [2**62, 2**62 - 1])
    assert len(ns) == 2 and len(ns.union(ns)) == 2
    with pytest.raises(InputError, match="more than once"):
        NeuronSet.from_columns(["mlp.gate", "mlp.gate"], [1, 1], [2**62, 2**62])


def test_specific_names_dropped_countries(tmp_path):
    d = synthetic_table(["China", "Iran", "Mexico", "Spain"], seed=1, widths=WIDTHS)
    c = synthetic_table(["China", "Iran", "Mexico", "Spain"], seed=2, control=True, widths=WIDTHS)
    crc = synthetic_table(["China", "Spain", "USA"], seed=3, widths=WIDTHS, dataset="countryrc")
    sets = select_specific_many([d], [c], crc, None, t=0.2, z=-5)
    assert sorted(sets) == ["China", "Spain"]
    dropped = sets["China"].params["dropped_countries"]
    assert sorted(dropped) == ["Iran", "Mexico"] and "not in the CountryRC table" in dropped["Iran"]
    assert "dropped_countries" not in select_specific_many([d], [c], None, None, t=0.2)["Iran"].params
    paths = [str(p.save(tmp_path / f"{n}.safetensors")) for n, p in [("d", d), ("c", c), ("crc", crc)]]
    base = ["select", "specific", "-d", paths[0], "-c", paths[1], "--countryrc", paths[2]]
    res = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "dropped Iran: not in the CountryRC table" in res.output and "dropped Mexico" in res.output
    res = CliRunner().invoke(cli, [*base, "--countries", "China,Iran", "-o", str(tmp_path / "out2")])
    assert res.exit_code == 2 and "has no group 'Iran'" in res.output and not (tmp_path / "out2").exists()
    res = CliRunner().invoke(cli, [*base, "--countries", "targets", "-o", str(tmp_path / "out3")])
    assert res.exit_code == 2 and "a country missing from one table" in res.output


def test_empty_site_lists_are_one_line_errors(tmp_path):
    dp, cp = _tables(tmp_path, ["China", "Iran"])
    runner = CliRunner()
    res = runner.invoke(
        cli, ["select", "specific", "-d", dp, "-c", cp, "--no-countryrc", "--sites", "", "-o", str(tmp_path / "s")]
    )
    assert res.exit_code == 2 and "no sites to select from" in res.output
    res = runner.invoke(
        cli,
        [
            "select",
            "general",
            "-d",
            dp,
            "-c",
            cp,
            "--no-countryrc",
            "--mlp-sites",
            " , ",
            "--attn-sites",
            "",
            "-o",
            str(tmp_path / "g.json"),
        ],
    )
    assert res.exit_code == 2 and "no sites to select from" in res.output and not (tmp_path / "g.json").exists()
