"""SIGKILL at random points: resumed runs give results identical to uninterrupted ones, and no file
is ever left half-written.

The default suite runs one short instance per command (training's is
``tests/test_training_stage.py::test_sigkill_during_training_then_resume_is_bit_identical``);
``-m slow`` runs 10 random kill points each for scoring, evaluation and training.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from culture_neurons import ScoreTable
from tests.tiny import build_tokenizer, make_examples, tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    tiny_model("llama").save_pretrained(root / "model")
    build_tokenizer().save_pretrained(root / "model")
    exs = make_examples(80)
    (root / "e.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in exs))
    return root


def run_cli(*args, wait=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if wait:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out.decode()[-2000:]
    return proc


def kill_after(proc, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds``; True if it was still running."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


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


def eval_args(setup, out):
    return [
        "evaluate",
        "-m",
        setup / "model",
        "-b",
        setup / "e.jsonl",
        "-o",
        out,
        "--scorer",
        "choice",
        "--n-boot",
        20,
        "-q",
    ]


def _scoring_trial(setup, tmp: Path, delay: float, reference: ScoreTable) -> bool:
    out = tmp / "s.safetensors"
    killed = kill_after(run_cli(*score_args(setup, out), wait=False), delay)
    no_temp_files(tmp)
    if killed:
        assert not out.exists() or ScoreTable.load(out)  # either absent or complete
    run_cli(*score_args(setup, out))
    got = ScoreTable.load(out)
    assert all(torch.equal(got.scores[s], reference.scores[s]) for s in reference.sites)
    assert not list(tmp.glob("*.ckpt*"))
    return killed


def _evaluation_trial(setup, tmp: Path, delay: float, reference: dict) -> bool:
    out = tmp / "eval"
    killed = kill_after(run_cli(*eval_args(setup, out), wait=False), delay)
    no_temp_files(tmp)
    if killed and (out / "summary.json").exists():
        json.loads((out / "summary.json").read_text())  # whole, if present
    run_cli(*eval_args(setup, out))
    assert json.loads((out / "summary.json").read_text())["results"] == reference
    return killed


@pytest.fixture(scope="module")
def references(setup, tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    run_cli(
        "score", "-m", setup / "model", "-e", setup / "e.jsonl", "-o", root / "s.safetensors", "--batch-size", 2, "-q"
    )
    run_cli(*eval_args(setup, root / "eval"))
    return ScoreTable.load(root / "s.safetensors"), json.loads((root / "eval" / "summary.json").read_text())["results"]


def test_kill_scoring_once(setup, references, tmp_path):
    assert _scoring_trial(setup, tmp_path, 4.0, references[0])


def test_kill_evaluation_once(setup, references, tmp_path):
    assert _evaluation_trial(setup, tmp_path, 4.0, references[1])


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_kill_scoring_at_random_points(setup, references, tmp_path, trial):
    _scoring_trial(setup, tmp_path, random.Random(trial).uniform(2.5, 8.0), references[0])


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_kill_evaluation_at_random_points(setup, references, tmp_path, trial):
    _evaluation_trial(setup, tmp_path, random.Random(100 + trial).uniform(2.5, 8.0), references[1])


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
    # 60 optimizer steps with a checkpoint after each: a few seconds of training after the start-up.
    exs = make_examples(240)
    (setup / "train.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in exs))
    out = tmp_path_factory.mktemp("train-ref") / "run"
    run_cli(*train_args(setup, out))
    return load_file(out / "model.safetensors"), json.loads((out / "training.json").read_text())["steps"]


def _training_trial(setup, tmp: Path, delay: float, reference) -> bool:
    """Kill ``delay`` seconds after training starts (its checkpoint folder appears): mid-step or mid-save."""
    out = tmp / "train"
    proc = run_cli(*train_args(setup, out), wait=False)
    deadline = time.time() + 300
    while proc.poll() is None and not (out / "checkpoints").exists() and time.time() < deadline:
        time.sleep(0.002)
    killed = kill_after(proc, delay)
    no_temp_files(tmp)
    if killed and (out / "training.json").exists():
        json.loads((out / "training.json").read_text())  # written last: whole, with the model beside it
        assert (out / "model.safetensors").is_file()
    run_cli(*train_args(setup, out))
    weights, steps = reference
    got = load_file(out / "model.safetensors")
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    assert json.loads((out / "training.json").read_text())["steps"] == steps
    assert not (out / "checkpoints").exists() and not list(out.glob(".model-*"))
    return killed


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_kill_training_at_random_points(setup, trained_reference, tmp_path, trial):
    assert _training_trial(setup, tmp_path, random.Random(200 + trial).uniform(0.0, 2.0), trained_reference)
