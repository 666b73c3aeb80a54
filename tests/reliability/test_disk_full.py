"""A real full disk (issue 15, item 2): a small tmpfs, not a mocked ``OSError``.

safetensors reports ENOSPC as its own ``SafetensorError``; torch and JSON writers as ``OSError``.
Every command must turn either into one line, exit 1, and leave nothing behind: no temporary file,
no partial output, no empty output folder. Mounting needs root; elsewhere the tests skip.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reliability.kit import assert_one_line_error, invoke, snapshot


@pytest.fixture
def small_fs(tmp_path):
    """A 100 KiB tmpfs mounted on a fresh folder, unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem of ``folder`` with one file, then free ``leave`` bytes of it again."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = filler.stat().st_size
    os.truncate(filler, max(size - leave, 0))
    return filler


def _check(result, folder: Path, before: set[str]):
    last = assert_one_line_error(result, r"No space left on device", code=1)
    assert "no partial file was left" in last or "no file was left half-written" in last, last
    assert snapshot(folder) == before, f"left behind: {sorted(snapshot(folder) - before)}"
    return last


def test_score_on_a_full_disk(rkit, small_fs):
    fill(small_fs)
    before = snapshot(small_fs)
    out = small_fs / "sub" / "s.safetensors"
    result = invoke(["score", "-m", rkit / "llama", "-e", rkit / "e.jsonl", "-o", out, "-q"])
    last = _check(result, small_fs, before)
    assert "s.safetensors" in last


def test_score_when_the_disk_fills_halfway_through_the_table(rkit, small_fs):
    assert (rkit / "ds.safetensors").stat().st_size > 6000, "the table must be larger than the room left"
    fill(small_fs, leave=4096)
    before = snapshot(small_fs)
    out = small_fs / "s.safetensors"
    _check(invoke(["score", "-m", rkit / "llama", "-e", rkit / "e.jsonl", "-o", out, "-q"]), small_fs, before)


def test_a_full_disk_keeps_the_previous_table(rkit, small_fs):
    out = small_fs / "s.safetensors"
    shutil.copy(rkit / "ds.safetensors", out)
    previous = out.read_bytes()
    fill(small_fs, leave=2048)
    before = snapshot(small_fs)
    _check(invoke(["score", "-m", rkit / "llama", "-e", rkit / "e.jsonl", "-o", out, "-q"]), small_fs, before)
    assert out.read_bytes() == previous


def test_select_on_a_full_disk(rkit, small_fs):
    fill(small_fs)
    before = snapshot(small_fs)
    argv = [
        "select",
        "general",
        "-d",
        rkit / "ds.safetensors",
        "-c",
        rkit / "ctl.safetensors",
        "--countryrc",
        rkit / "crc.safetensors",
        "-o",
        small_fs / "sets" / "general.json",
    ]
    _check(invoke(argv), small_fs, before)


def test_evaluate_on_a_full_disk_leaves_no_empty_folder(rkit, small_fs):
    fill(small_fs)
    before = snapshot(small_fs)
    argv = ["evaluate", "-m", rkit / "llama", "-b", rkit / "e.jsonl", "-o", small_fs / "eval", "--n-boot", 10, "-q"]
    _check(invoke(argv), small_fs, before)
