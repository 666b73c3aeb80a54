"""The progress-triggered kill helper of tests/kill.py: it signals at the trigger, and fails (never
passes or skips) when the trigger cannot be seen before the process exits or the signal comes too late."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from culture_neurons.attribution.checkpoint import ScoringCheckpoint
from tests.kill import (
    Output,
    checkpoint_batches,
    exists,
    kill_when,
    scoring_checkpoint_at,
    training_checkpoint_at,
    training_checkpoints,
    wait_for,
)

# Children wait for a signal, not for a clock, so no test here depends on how long anything takes.
BLOCK = "import signal; signal.pause()"


def _child(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], **kwargs)


def test_kill_when_signals_at_the_trigger(tmp_path):
    marker = tmp_path / "started"
    proc = _child(f"open({str(marker)!r}, 'w').close(); {BLOCK}")
    assert kill_when(proc, exists(marker), "the marker file") == -signal.SIGKILL


def test_a_process_that_exits_before_the_trigger_fails_the_test(tmp_path):
    proc = _child("pass")
    with pytest.raises(pytest.fail.Exception, match="exited with 0 before the marker file"):
        kill_when(proc, exists(tmp_path / "never"), "the marker file")


def test_a_signal_that_finds_the_process_finished_fails_the_test(tmp_path):
    done = _child("pass")
    done.wait()
    with pytest.raises(pytest.fail.Exception, match="exited with 0, not -9: it had finished"):
        kill_when(done, lambda: True, "the start")
    failed = _child("raise SystemExit(3)")
    failed.wait()
    with pytest.raises(pytest.fail.Exception, match=r"exited with 3, not -9$"):
        kill_when(failed, lambda: True, "the start")


def test_a_handled_signal_lands_with_the_expected_exit_code(tmp_path):
    marker = tmp_path / "ready"
    code = (
        "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); "
        f"open({str(marker)!r}, 'w').close(); {BLOCK}"
    )
    assert kill_when(_child(code), exists(marker), "the handler", sig=signal.SIGTERM, expect=143) == 143


def test_a_trigger_that_never_comes_fails_as_a_hang(tmp_path):
    proc = _child(BLOCK)
    with pytest.raises(pytest.fail.Exception, match="did not happen within"):
        wait_for(proc, lambda: False, "nothing", timeout=0.01)
    assert proc.poll() is not None  # the hung process was killed


def test_a_printed_line_is_a_trigger():
    proc = _child(f"print('step 1', flush=True); print('step 2', flush=True); {BLOCK}", stdout=subprocess.PIPE)
    output = Output(proc.stdout)
    kill_when(proc, output.line(r"^step (\d+)", lambda m: int(m[1]) >= 2), "step 2")
    assert output.text() == "step 1\nstep 2\n"
    assert not output.line(r"^step 3")() and output.line(r"^step 1")()


def test_scoring_checkpoint_progress_is_read_from_the_header(tmp_path):
    path = tmp_path / "s.ckpt"
    assert checkpoint_batches(path) is None and not scoring_checkpoint_at(path, 1)()
    ScoringCheckpoint(path, {"run": 1}).save(3, {"mlp": torch.zeros(2, 2)}, torch.zeros(2), torch.zeros(2))
    assert checkpoint_batches(path) == 3
    assert scoring_checkpoint_at(path, 3)() and not scoring_checkpoint_at(path, 4)()
    path.write_bytes(b"not a checkpoint")
    assert checkpoint_batches(path) is None


def test_training_checkpoints_count_only_whole_ones_unless_asked(tmp_path):
    assert training_checkpoints(tmp_path / "missing") == []
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    (tmp_path / "checkpoint-x").mkdir()
    assert training_checkpoints(tmp_path) == [2]
    assert training_checkpoints(tmp_path, complete=False) == [2, 10]
    assert training_checkpoint_at(tmp_path, 2)() and not training_checkpoint_at(tmp_path, 3)()
    assert training_checkpoint_at(tmp_path, 10, complete=False)()
