"""Outputs get the mode the umask gives (issue 15, item 1), for every kind of file a command writes.

``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries and a rename keeps that mode, which made
every output private to its owner. On a shared cluster a group folder with umask 002 or 027 must
give files that the group can read.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
import torch

from culture_neurons.fileio import atomic_path, write_json_atomic
from tests.reliability.kit import invoke

UMASKS = [0o022, 0o027, 0o002]


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def wrong_modes(root: Path, mask: int, include_root: bool = True) -> list[str]:
    """Every file and folder under ``root`` whose mode is not 0o666/0o777 minus ``mask``."""
    bad = []
    for path in [root, *root.rglob("*")][0 if include_root else 1 :]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        if mode != want:
            bad.append(f"{path.relative_to(root.parent)}: {oct(mode)} (want {oct(want)})")
    return bad


def commands(rkit: Path, out: Path) -> list[list]:
    """One run of each command that writes files, all into ``out``."""
    general = out / "sets" / "general.json"
    return [
        ["score", "-m", rkit / "llama", "-e", rkit / "e.jsonl", "-o", out / "tables" / "s.safetensors", "-q"],
        [
            "select",
            "general",
            "-d",
            rkit / "ds.safetensors",
            "-c",
            rkit / "ctl.safetensors",
            "--countryrc",
            rkit / "crc.safetensors",
            "-o",
            general,
        ],
        [
            "select",
            "specific",
            "-d",
            rkit / "ds.safetensors",
            "-c",
            rkit / "ctl.safetensors",
            "--countryrc",
            rkit / "crc.safetensors",
            "--t",
            "0.1",
            "--z",
            "0",
            "-o",
            out / "sets" / "specific",
        ],
        ["select", "random", "--like", rkit / "general.json", "-o", out / "sets" / "random", "--seeds", 2],
        ["select", "export", rkit / "general.json", "-o", out / "sets" / "general.csv"],
        [
            "evaluate",
            "-m",
            rkit / "llama",
            "-b",
            rkit / "e.jsonl",
            "-o",
            out / "eval",
            "--n-boot",
            10,
            "-q",
            "--neurons",
            rkit / "general.json",
        ],
        ["data", "export", "demo-culture", "--out", out / "data" / "demo.jsonl"],
    ]


@pytest.mark.parametrize("mask", UMASKS, ids=[oct(m) for m in UMASKS])
def test_every_command_writes_with_the_umask_mode(rkit, tmp_path, mask):
    out = tmp_path / "shared"
    with umask(mask):
        out.mkdir()
        for argv in commands(rkit, out):
            result = invoke(argv)
            assert result.exit_code == 0, (argv[:2], result.output)
    assert len(list(out.rglob("*"))) >= 10
    assert wrong_modes(out, mask) == []


@pytest.mark.parametrize("mask", UMASKS, ids=[oct(m) for m in UMASKS])
def test_atomic_files_checkpoints_and_temp_folders(tmp_path, mask):
    from culture_neurons.attribution.checkpoint import ScoringCheckpoint
    from culture_neurons.fileio import make_temp_dir

    with umask(mask):
        write_json_atomic(tmp_path / "a" / "b" / "x.json", {"k": 1})  # folders created on the way too
        with atomic_path(tmp_path / "t.bin") as tmp:
            torch.save({"x": torch.ones(2)}, tmp)
        ScoringCheckpoint(tmp_path / "s.ckpt", {"run": 1}).save(
            1, {"mlp.up": torch.zeros(2, 1, 3)}, torch.ones(1, dtype=torch.int64), torch.ones(1, dtype=torch.float64)
        )
        cache = make_temp_dir(".model.", tmp_path)  # the GGUF cache folder, before its rename
        (cache / "config.json").write_text("{}")
    assert len(list(tmp_path.rglob("*"))) == 7
    assert wrong_modes(tmp_path, mask, include_root=False) == []  # pytest makes tmp_path itself 0700


@pytest.mark.parametrize("mask", [pytest.param(0o022, marks=pytest.mark.slow), 0o027], ids=["0o22", "0o27"])
def test_a_whole_run_writes_with_the_umask_mode(tmp_path, mask):
    """Every one of the files of a tiny ``culture-neurons run`` (report, figures, manifest, tables, sets)."""
    from culture_neurons.pipeline import run_pipeline
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    model = save_tiny_model(tmp_path / "model")
    with umask(mask):
        out = tmp_path / "run"
        run_pipeline(tiny_run_config(model, out), progress=False)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 20 and (out / "report.html").is_file()
    assert wrong_modes(out, mask) == []
