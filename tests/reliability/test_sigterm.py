"""SIGTERM and SIGINT during scoring (issue 15, item 3): the current batch finishes, a checkpoint is
written, one line says what was kept and how to resume, the exit code is 143 or 130, and the rerun
gives the same table as an uninterrupted run. Temporary files of a killed write go on the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from culture_neurons import ScoreTable
from culture_neurons.attribution import engine
from tests.kill import Output, kill_when
from tests.reliability.kit import assert_one_line_error, invoke, write_jsonl
from tests.tiny import make_examples


@pytest.fixture
def many(tmp_path):
    return write_jsonl(tmp_path / "many.jsonl", [e.to_dict() for e in make_examples(12)])


def _score(rkit, examples, out, *extra):
    return ["score", "-m", rkit / "llama", "-e", examples, "-o", out, "-q", "--batch-size", 2, *extra]


def _signal_at_batch(monkeypatch, signum: int, at: int) -> list[int]:
    """Send ``signum`` to this process while batch ``at`` is being collated (mid-batch, for real)."""
    seen: list[int] = []
    real = engine.collate_rows

    def collate(*args, **kwargs):
        seen.append(len(seen) + 1)
        if len(seen) == at:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "collate_rows", collate)
    return seen


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_scoring_saves_a_checkpoint_and_the_rerun_matches(rkit, tmp_path, many, monkeypatch, signum, code):
    reference = tmp_path / "ref.safetensors"
    assert invoke(_score(rkit, many, reference)).exit_code == 0
    out = tmp_path / "s.safetensors"
    seen = _signal_at_batch(monkeypatch, signum, at=3)
    result = invoke(_score(rkit, many, out, "--checkpoint-every", 100))
    last = assert_one_line_error(result, code=code)
    name = signal.Signals(signum).name
    assert (
        f"interrupted by {name}" in last
        and "3 of 6 batches saved to" in last
        and "rerun the same command to resume" in last
    ), last
    assert seen == [1, 2, 3], "the batch under way finished and nothing after it started"
    ckpt = Path(f"{out}.ckpt")
    assert ckpt.is_file() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ref.safetensors", "many.jsonl", ckpt.name])
    monkeypatch.undo()
    assert invoke(_score(rkit, many, out, "--checkpoint-every", 100)).exit_code == 0
    a, b = load_file(str(out)), load_file(str(reference))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.exists()


def test_signal_in_the_last_batch_keeps_everything(rkit, tmp_path, many, monkeypatch):
    out = tmp_path / "s.safetensors"
    _signal_at_batch(monkeypatch, signal.SIGTERM, at=6)
    last = assert_one_line_error(invoke(_score(rkit, many, out)), code=143)
    assert "6 of 6 batches saved" in last
    monkeypatch.undo()
    assert invoke(_score(rkit, many, out)).exit_code == 0
    assert ScoreTable.load(out).num_examples == 12


def test_signal_with_checkpoints_off_says_nothing_was_saved(rkit, tmp_path, many, monkeypatch):
    out = tmp_path / "s.safetensors"
    _signal_at_batch(monkeypatch, signal.SIGTERM, at=2)
    last = assert_one_line_error(invoke(_score(rkit, many, out, "--checkpoint-every", 0)), code=143)
    assert "not saved (checkpoints are off)" in last and "start over" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.jsonl"]


def test_signal_before_scoring_starts(rkit, tmp_path, many, monkeypatch):
    from culture_neurons.models import loading

    real = loading.load_model

    def slow_load(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "load_model", slow_load)
    last = assert_one_line_error(invoke(_score(rkit, many, tmp_path / "s.safetensors")), code=143)
    assert "nothing was scored yet" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.jsonl"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stray_temporaries_of_killed_writes_are_removed_on_the_next_start(rkit, tmp_path, many):
    from culture_neurons.fileio import temp_prefix

    out = tmp_path / "s.safetensors"
    dead = _dead_pid()
    mine = temp_prefix(out)  # ".s.safetensors.HOST-PID."
    host = mine.split(".")[-2].rsplit("-", 1)[0]
    stale = [
        tmp_path / f".s.safetensors.ckpt.{host}-{dead}.k3j2.safetensors.tmp",  # killed during a checkpoint write
        tmp_path / f".s.safetensors.{host}-{dead}.a8f0.safetensors.tmp",  # killed during the table write
        tmp_path / ".s.safetensors.ckpt.x1y2z3w4.safetensors.tmp",  # an old-style name, an hour old
    ]
    for path in stale:
        path.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale[2], (old, old))
    # Alive until it is killed below, however long the scoring takes (it waits for a signal, not for a clock).
    sleeper = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        live = tmp_path / f".s.safetensors.{host}-{sleeper.pid}.q1w2.safetensors.tmp"  # another writer, still running
        other_host = tmp_path / f".s.safetensors.{host}x-{dead}.q1w2.safetensors.tmp"
        live.write_bytes(b"busy")
        other_host.write_bytes(b"elsewhere")
        assert invoke(_score(rkit, many, out)).exit_code == 0
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["many.jsonl", "s.safetensors", live.name, other_host.name]), left
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.slow
@pytest.mark.integration
def test_sigterm_to_a_real_process(rkit, tmp_path):
    """The real thing: a separate ``culture-neurons score`` process gets SIGTERM from outside."""
    examples = write_jsonl(tmp_path / "e.jsonl", [e.to_dict() for e in make_examples(60)])
    out = tmp_path / "s.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CULTURE_NEURONS_PROGRESS_INTERVAL": "1e-9"}  # a line per batch
    argv = [
        sys.executable,
        "-m",
        "culture_neurons",
        "score",
        "-m",
        str(rkit / "llama"),
        "-e",
        str(examples),
        "-o",
        str(out),
        "--batch-size",
        "1",
        "--checkpoint-every",
        "1000",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    output = Output(proc.stderr)
    first_batch = output.line(r"^scoring \(.*\): (\d+)/60 ", lambda m: int(m[1]) >= 1)
    kill_when(proc, first_batch, "the line saying batch 1 of 60 is scored", sig=signal.SIGTERM, expect=143)
    err = output.text()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert (
        last.startswith("error: interrupted by SIGTERM")
        and "batches saved to" in last
        and "rerun the same command" in last
    ), err
    done = int(last.split("interrupted by SIGTERM; ")[1].split(" of ")[0])
    assert 1 <= done < 60
    assert not out.exists() and Path(f"{out}.ckpt").is_file()
    rerun = subprocess.run(argv + ["-q"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done} of 60 batches already scored" in rerun.stderr
    assert ScoreTable.load(out).num_examples == 60
