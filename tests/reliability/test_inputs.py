"""Inputs that must be refused before any work (issue 15, items 5, 9, 10, 12 and the context rule).

- an output path that is one of the command's inputs (item 5);
- a device torch does not know or this machine lacks (item 9), for every command with ``--device``;
- a FIFO is read, and a device file or a folder is named for what it is (item 10);
- a score table whose metadata disagrees with its tensors, and ``--sites ""`` (item 12);
- a prompt longer than the model's context.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import click
import pytest
import torch
from safetensors.torch import save_file

from culture_neurons import ScoreTable
from tests.reliability.kit import assert_one_line_error, invoke, snapshot, write_jsonl


def _score(rkit, examples, out, *extra):
    return ["score", "-m", rkit / "llama", "-e", examples, "-o", out, "-q", *extra]


# -- item 5: outputs that are inputs ---------------------------------------------------------------


def test_score_refuses_to_overwrite_its_examples(rkit, tmp_path):
    examples = tmp_path / "same.jsonl"
    examples.write_bytes((rkit / "e.jsonl").read_bytes())
    before = examples.read_bytes()
    assert_one_line_error(invoke(_score(rkit, examples, examples)), r"--out .*same\.jsonl is also the input --examples")
    link = tmp_path / "link.safetensors"
    link.symlink_to(examples)
    assert_one_line_error(invoke(_score(rkit, examples, link)), r"is also the input --examples")
    assert examples.read_bytes() == before


def test_select_random_refuses_to_overwrite_its_template(rkit, tmp_path):
    like = tmp_path / "g.json"
    like.write_bytes((rkit / "general.json").read_bytes())
    before = like.read_bytes()
    result = invoke(["select", "random", "--like", like, "-o", like, "--seeds", 1])
    assert_one_line_error(result, r"g\.json")
    assert like.read_bytes() == before


# -- item 9: devices ------------------------------------------------------------------------------


def _commands_with_device():
    from culture_neurons.cli import cli

    found = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        elif any("--device" in p.opts for p in cmd.params):
            found.append(path)

    walk(cli, [])
    return found


DEVICE_ARGS = {
    "score": lambda k, w: _score(k, k / "e.jsonl", w / "out" / "s.safetensors"),
    "evaluate": lambda k, w: [
        "evaluate",
        "-m",
        k / "llama",
        "-b",
        k / "e.jsonl",
        "-o",
        w / "out" / "ev",
        "-q",
        "--n-boot",
        10,
    ],
    "ablate": lambda k, w: [
        "ablate",
        "-m",
        k / "llama",
        "-b",
        k / "e.jsonl",
        "--neurons",
        k / "general.json",
        "-o",
        w / "out" / "ab",
        "-q",
        "--n-boot",
        10,
    ],
    "cross-culture": lambda k, w: [
        "cross-culture",
        "-m",
        k / "llama",
        "-b",
        k / "e.jsonl",
        "--neurons",
        k / "general.json",
        "-o",
        w / "out" / "cc",
        "-q",
        "--n-boot",
        10,
    ],
    "train": lambda k, w: [
        "train",
        "-m",
        k / "llama",
        "--neurons",
        k / "general.json",
        "-d",
        k / "e.jsonl",
        "-o",
        w / "out" / "ft",
    ],
    "inspect": lambda k, w: [
        "inspect",
        "--model",
        k / "llama",
        "--neurons",
        k / "general.json",
        "--examples",
        k / "e.jsonl",
    ],
    "validate": lambda k, w: [
        "validate",
        "--model",
        k / "llama",
        "--data-dir",
        k,
        "--out",
        w / "out" / "v",
        "--quick",
        "-q",
    ],
}


def test_every_command_with_a_device_option_is_covered():
    assert sorted(" ".join(p) for p in _commands_with_device()) == sorted(DEVICE_ARGS)


BAD_DEVICES = ["tpu9", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])


# Defects this suite found in others' commands: the owner fixes them and removes the mark.
DEVICE_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=DEVICE_XFAIL[c])) if c in DEVICE_XFAIL else c
        for c in sorted(DEVICE_ARGS)
    ],
)
@pytest.mark.parametrize("device", BAD_DEVICES)
def test_bad_device_is_one_line_before_any_work(rkit, tmp_path, command, device, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no test reaches the network, even when a check comes too late
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    before = snapshot(tmp_path)
    result = invoke([*DEVICE_ARGS[command](rkit, tmp_path), "--device", device])
    assert_one_line_error(result, rf"device|{device}")
    assert "Torch not compiled" not in result.output
    assert snapshot(tmp_path) == before


# -- item 10: FIFOs and device files --------------------------------------------------------------


def _fifo_feeding(path: Path, data: bytes) -> threading.Thread:
    os.mkfifo(path)

    def feed():
        with open(path, "wb") as fh:
            fh.write(data)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def test_score_reads_examples_from_a_fifo(rkit, tmp_path):
    fifo = tmp_path / "examples.fifo"
    thread = _fifo_feeding(fifo, (rkit / "e.jsonl").read_bytes())
    out = tmp_path / "s.safetensors"
    result = invoke(_score(rkit, fifo, out))
    thread.join(timeout=5)
    assert result.exit_code == 0, result.output
    assert ScoreTable.load(out).num_examples == 6


@pytest.mark.parametrize(
    "bad, message", [("/dev/null", r"/dev/null is a device file"), ("folder", r"folder'? is a (folder|directory)")]
)
def test_device_files_and_folders_are_named_for_what_they_are(rkit, tmp_path, bad, message):
    path = bad if bad.startswith("/") else tmp_path / bad
    if bad == "folder":
        path.mkdir()
    last = assert_one_line_error(invoke(_score(rkit, path, tmp_path / "s.safetensors")), message)
    assert "does not exist" not in last


def test_a_score_table_from_a_fifo_is_named_a_pipe(rkit, tmp_path):
    fifo = tmp_path / "t.fifo"
    os.mkfifo(fifo)
    with pytest.raises(Exception, match=r"t\.fifo is a pipe"):
        ScoreTable.load(fifo)


# -- item 12: score tables whose metadata disagrees with the tensors -----------------------------


def _rewrite(rkit, tmp_path, edit):
    table = ScoreTable.load(rkit / "ds.safetensors")
    tensors = {f"scores/{s}": t for s, t in table.scores.items()}
    tensors.update(counts=table.counts.clone(), prob_sums=table.prob_sums.clone())
    meta = {
        **table.meta,
        "format": "culture-neurons/score-table",
        "format_version": 1,
        "groups": table.groups,
        "sites": table.sites,
    }
    edit(tensors, meta)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={"culture_neurons": json.dumps(meta)})
    return path


def _drop_site(tensors, meta):
    del tensors[f"scores/{meta['sites'][0]}"]


def _negative(tensors, meta):
    tensors["counts"][0] = -tensors["counts"][0] - 1
    tensors["counts"][1] += 2 * tensors["counts"][0].abs()  # keep the total plausible


def _truncate_ids(tensors, meta):
    meta["example_ids"] = meta["example_ids"][:-2]
    meta.pop("example_ids_sha256")


def _edit_ids(tensors, meta):
    meta["example_ids"] = meta["example_ids"][:-1] + ["someone-else"]


TABLE_CASES = [
    (
        "site in metadata without a tensor",
        _drop_site,
        r"bad\.safetensors: metadata key 'sites' names site '.+', but the file has no tensor",
    ),
    ("negative count", _negative, r"bad\.safetensors: tensor 'counts' has a negative count"),
    (
        "truncated example ids",
        _truncate_ids,
        r"bad\.safetensors: metadata key 'example_ids' lists 4 ids but tensor 'counts' sums to 6",
    ),
    (
        "edited example ids",
        _edit_ids,
        r"bad\.safetensors: metadata key 'example_ids' does not match 'example_ids_sha256'",
    ),
]


@pytest.mark.parametrize("edit, message", [c[1:] for c in TABLE_CASES], ids=[c[0] for c in TABLE_CASES])
def test_inconsistent_score_tables_are_refused(rkit, tmp_path, edit, message):
    bad = _rewrite(rkit, tmp_path, edit)
    argv = [
        "select",
        "general",
        "-d",
        bad,
        "-c",
        rkit / "ctl.safetensors",
        "--countryrc",
        rkit / "crc.safetensors",
        "-o",
        tmp_path / "out" / "g.json",
    ]
    before = snapshot(tmp_path)
    assert_one_line_error(invoke(argv), message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("sites", ["", ",", "mlp.gate,,attn.o", "mlp.gate,mlp.gate"])
def test_empty_or_repeated_sites_are_refused(rkit, tmp_path, sites):
    assert_one_line_error(
        invoke(_score(rkit, rkit / "e.jsonl", tmp_path / "s.safetensors", "--sites", sites)), r"--sites"
    )
    assert not any(tmp_path.iterdir())


# -- a prompt longer than the model's context -------------------------------------------------------


def test_a_prompt_longer_than_the_context_is_refused_before_scoring(rkit, tmp_path):
    records = [json.loads(line) for line in (rkit / "e.jsonl").read_text().splitlines()]
    records.append({"id": "long", "prompt": "sushi tacos " * 200 + "Answer:", "answer": " A", "group": "Japan"})
    examples = write_jsonl(tmp_path / "e.jsonl", records)
    last = assert_one_line_error(
        invoke(_score(rkit, examples, tmp_path / "s.safetensors")),
        r"example 'long'.*longer than the model's context of 128 tokens",
    )
    assert "nothing was scored" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl"]
