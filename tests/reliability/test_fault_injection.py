"""SIGKILL at points of a run's progress: resumed runs give results identical to uninterrupted ones,
and no file is ever left half-written.

Each kill waits for progress, not for a time (``tests/kill.py``): scoring is killed once its n-th
checkpoint is on disk, evaluation once it has printed that n examples are done, training once its
n-th checkpoint has appeared or is complete. So the kill lands mid-work on a fast machine and on a
slow one; a run that finished before its trigger fails the test.

The default suite runs one instance per command (training's is
``tests/test_training_stage.py::test_sigkill_during_training_then_resume_is_bit_identical``);
``-m slow`` runs 10 random progress points each for scoring, evaluation and training.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from culture_neurons import ScoreTable
from tests.kill import (
    Output,
    checkpoint_batches,
    kill_when,
    scoring_checkpoint_at,
    training_checkpoint_at,
    training_checkpoints,
)
from tests.tiny import build_tokenizer, make_examples, tiny_model

EXAMPLES = 80
BATCHES = EXAMPLES // 2  # scoring and evaluation run at batch size 2; scoring checkpoints after each but the last
TRAIN_STEPS = 60  # 240 training examples at batch size 4, a checkpoint after each step


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    tiny_model("llama").save_pretrained(root / "model")
    build_tokenizer().save_pretrained(root / "model")
    exs = make_examples(EXAMPLES)
    (root / "e.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in exs))
    return root


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def start_cli(*args, stdout=subprocess.DEVNULL, **env: str) -> subprocess.Popen:
    """A ``culture-neurons`` process to be killed; its output is dropped unless ``stdout`` says otherwise."""
    return subprocess.Popen(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=_env(**env),
        stdout=stdout,
        stderr=subprocess.STDOUT,
    )


def run_cli(*args) -> str:
    """Run a ``culture-neurons`` command to the end; it must succeed. Returns its output."""
    done = subprocess.run(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    return done.stdout


def no_temp_files(folder: Path) -> None:
    leftovers = [
        p for p in folder.rglob("*") if p.name.endswith(".tmp") or (p.name.startswith(".") and ".tmp" in p.name)
    ]
    assert not leftovers, leftovers


def score_args(setup, out):
    return [
        "score",
        "-m",
        setup / "model",
        "-e",
        setup / "e.jsonl",
        "-o",
        out,
        "--batch-size",
        2,
        "--checkpoint-every",
        1,
        "-q",
    ]


def eval_args(setup, out, quiet=True):
    args = [
        "evaluate",
        "-m",
        setup / "model",
        "-b",
        setup / "e.jsonl",
        "-o",
        out,
        "--scorer",
        "choice",
        "--batch-size",
        2,
        "--n-boot",
        20,
    ]
    return [*args, "-q"] if quiet else args


def _scoring_trial(setup, tmp: Path, at: int, reference: ScoreTable) -> None:
    """Kill scoring once checkpoint ``at`` (of ``BATCHES - 1``) is on disk, then resume from it."""
    out = tmp / "s.safetensors"
    ckpt = Path(f"{out}.ckpt")
    proc = start_cli(*score_args(setup, out))
    kill_when(proc, scoring_checkpoint_at(ckpt, at), f"scoring checkpoint {at} of {BATCHES - 1}")
    no_temp_files(tmp)
    assert not out.exists()  # killed mid-run: no table, not even part of one
    done = checkpoint_batches(ckpt)
    assert done is not None and at <= done < BATCHES
    log = run_cli(*score_args(setup, out))
    assert f"{done} of {BATCHES} batches already scored" in log  # resumed, not started over
    got = ScoreTable.load(out)
    assert all(torch.equal(got.scores[s], reference.scores[s]) for s in reference.sites)
    assert torch.equal(got.counts, reference.counts) and torch.equal(got.prob_sums, reference.prob_sums)
    assert not list(tmp.glob("*.ckpt*"))


def _evaluation_trial(setup, tmp: Path, at: int, reference: dict) -> None:
    """Kill evaluation once it has printed that ``at`` of its ``EXAMPLES`` examples are done, then rerun it."""
    out = tmp / "eval"
    # A progress line after every batch; without a terminal they are plain lines (culture_neurons.progress).
    proc = start_cli(
        *eval_args(setup, out, quiet=False), stdout=subprocess.PIPE, CULTURE_NEURONS_PROGRESS_INTERVAL="1e-9"
    )
    output = Output(proc.stdout)
    progress_line = output.line(rf"^evaluating: (\d+)/{EXAMPLES} ex", lambda m: int(m[1]) >= at)
    kill_when(proc, progress_line, f"evaluation progress {at}/{EXAMPLES}")
    assert "\r" not in output.text()
    no_temp_files(tmp)
    assert not out.exists()  # the folder appears only with the results
    run_cli(*eval_args(setup, out))
    assert json.loads((out / "summary.json").read_text())["results"] == reference


@pytest.fixture(scope="module")
def references(setup, tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    run_cli(
        "score", "-m", setup / "model", "-e", setup / "e.jsonl", "-o", root / "s.safetensors", "--batch-size", 2, "-q"
    )
    run_cli(*eval_args(setup, root / "eval"))
    return ScoreTable.load(root / "s.safetensors"), json.loads((root / "eval" / "summary.json").read_text())["results"]


def test_kill_scoring_once(setup, references, tmp_path):
    _scoring_trial(setup, tmp_path, 1, references[0])


def test_kill_evaluation_once(setup, references, tmp_path):
    _evaluation_trial(setup, tmp_path, 2, references[1])


# Random points in the first three quarters of the work, so that a quarter of it is still ahead
# when the trigger is seen, however fast the machine.
@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_kill_scoring_at_random_points(setup, references, tmp_path, trial):
    _scoring_trial(setup, tmp_path, random.Random(trial).randint(1, 3 * BATCHES // 4), references[0])


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_kill_evaluation_at_random_points(setup, references, tmp_path, trial):
    _evaluation_trial(setup, tmp_path, random.Random(100 + trial).randint(1, 3 * EXAMPLES // 4), references[1])


def train_args(setup, out):
    return [
        "train",
        "-m",
        setup / "model",
        "--modules",
        "mlp.1,attn.0",
        "--data",
        setup / "train.jsonl",
        "--out",
        out,
        "--batch-size",
        4,
        "--micro-batch-size",
        2,
        "--lr",
        1e-3,
        "--save-steps",
        1,
        "--device",
        "cpu",
        "-q",
    ]


@pytest.fixture(scope="module")
def trained_reference(setup, tmp_path_factory):
    exs = make_examples(4 * TRAIN_STEPS)
    (setup / "train.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in exs))
    out = tmp_path_factory.mktemp("train-ref") / "run"
    run_cli(*train_args(setup, out))
    return load_file(out / "model.safetensors"), json.loads((out / "training.json").read_text())["steps"]


def _training_trial(setup, tmp: Path, step: int, complete: bool, reference) -> None:
    """Kill training once checkpoint ``step`` appears (``complete=False``: usually mid-save) or is whole
    (mid-step), then resume."""
    out = tmp / "train"
    proc = start_cli(*train_args(setup, out))
    state = "complete" if complete else "started"
    kill_when(
        proc,
        training_checkpoint_at(out / "checkpoints", step, complete),
        f"training checkpoint {step} of {TRAIN_STEPS} {state}",
    )
    no_temp_files(tmp)
    assert not (out / "training.json").exists() and not (out / "model.safetensors").exists()  # killed mid-run
    whole = training_checkpoints(out / "checkpoints")
    run_cli(*train_args(setup, out))
    weights, steps = reference
    got = load_file(out / "model.safetensors")
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == steps
    # Resumed from the newest whole checkpoint; only a kill while the first one was written starts over.
    assert record["resumed_from"] == (str(out / "checkpoints" / f"checkpoint-{whole[-1]}") if whole else None)
    assert not (out / "checkpoints").exists() and not list(out.glob(".model-*"))


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_kill_training_at_random_points(setup, trained_reference, tmp_path, trial):
    rng = random.Random(200 + trial)
    _training_trial(setup, tmp_path, rng.randint(1, 3 * TRAIN_STEPS // 4), rng.random() < 0.5, trained_reference)
