"""Checkpoint/resume of scoring (bit-identical) and data-parallel scoring with gloo on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from culture_neurons import ScoreTable
from culture_neurons.attribution import engine as engine_mod
from culture_neurons.attribution.engine import score_examples
from culture_neurons.errors import ScoringError
from tests.kill import kill_when, scoring_checkpoint_at, wait_for
from tests.pipeline_helpers import torchrun_command
from tests.tiny import build_tokenizer, make_examples, tiny_model


def test_interrupted_run_resumes_bit_identical(tokenizer, llama, tmp_path, monkeypatch):
    examples = make_examples(9)
    full = score_examples(llama, tokenizer, examples, batch_size=2, progress=False)
    ckpt = tmp_path / "s.ckpt"
    original = engine_mod.ScoringEngine._target_prob
    calls = {"n": 0}

    def dies_on_fourth_batch(self, batch, gold):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, batch, gold)

    monkeypatch.setattr(engine_mod.ScoringEngine, "_target_prob", dies_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        score_examples(llama, tokenizer, examples, batch_size=2, progress=False, checkpoint=ckpt, checkpoint_every=1)
    assert ckpt.exists()
    monkeypatch.setattr(engine_mod.ScoringEngine, "_target_prob", original)
    calls["n"] = 0
    resumed = score_examples(
        llama, tokenizer, examples, batch_size=2, progress=False, checkpoint=ckpt, checkpoint_every=1
    )
    for site in full.sites:
        assert torch.equal(full.scores[site], resumed.scores[site])
    assert torch.equal(full.counts, resumed.counts) and torch.equal(full.prob_sums, resumed.prob_sums)
    assert not ckpt.exists()
    assert not any(m._forward_hooks for m in llama.modules())


def test_checkpoint_of_another_run_is_refused(tokenizer, llama, tmp_path, monkeypatch):
    ckpt = tmp_path / "s.ckpt"
    original = engine_mod.ScoringEngine._target_prob
    calls = {"n": 0}

    def dies(self, batch, gold):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("preempted")
        return original(self, batch, gold)

    monkeypatch.setattr(engine_mod.ScoringEngine, "_target_prob", dies)
    with pytest.raises(RuntimeError):
        score_examples(
            llama, tokenizer, make_examples(6), batch_size=2, progress=False, checkpoint=ckpt, checkpoint_every=1
        )
    monkeypatch.setattr(engine_mod.ScoringEngine, "_target_prob", original)
    with pytest.raises(ScoringError, match="belongs to a different scoring run"):
        score_examples(llama, tokenizer, make_examples(6), batch_size=2, progress=False, checkpoint=ckpt, control=True)


def _save_model(tmp_path, n=11):
    path = tmp_path / "model"
    tiny_model("llama").save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    examples = tmp_path / "e.jsonl"
    examples.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in make_examples(n)))
    return path, examples


def _cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


@pytest.mark.integration
def test_sigkill_during_scoring_then_resume(tmp_path):
    model, examples = _save_model(tmp_path, n=120)  # enough batches that the kill lands mid-run
    reference = tmp_path / "ref.safetensors"
    assert _cli("score", "-m", model, "-e", examples, "-o", reference, "--batch-size", 1, "-q").wait() == 0
    out = tmp_path / "s.safetensors"
    ckpt = tmp_path / "s.safetensors.ckpt"
    proc = _cli("score", "-m", model, "-e", examples, "-o", out, "--batch-size", 1, "--checkpoint-every", 1, "-q")
    kill_when(proc, scoring_checkpoint_at(ckpt, 1), "scoring checkpoint 1 of 119")
    assert not out.exists()  # never a half-written table
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert (
        _cli("score", "-m", model, "-e", examples, "-o", out, "--batch-size", 1, "--checkpoint-every", 1, "-q").wait()
        == 0
    )
    a, b = ScoreTable.load(reference), ScoreTable.load(out)
    assert all(torch.equal(a.scores[s], b.scores[s]) for s in a.sites)
    assert not ckpt.exists()


@pytest.mark.integration
def test_two_gloo_processes_equal_one(tmp_path):
    model, examples = _save_model(tmp_path)
    single = tmp_path / "single.safetensors"
    assert _cli("score", "-m", model, "-e", examples, "-o", single, "--batch-size", 2, "-q").wait() == 0
    double = tmp_path / "double.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = torchrun_command(
        "score", "-m", model, "-e", examples, "-o", double, "--batch-size", 2, "--device", "cpu", "-q"
    )
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    a, b = ScoreTable.load(single), ScoreTable.load(double)
    assert b.meta["example_ids"] == a.meta["example_ids"] and torch.equal(a.counts, b.counts)
    for s in a.sites:
        assert torch.allclose(a.scores[s], b.scores[s], rtol=1e-5, atol=1e-6 * a.scores[s].abs().max().item())
    assert torch.allclose(a.prob_sums, b.prob_sums, rtol=1e-6)


def _torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = torchrun_command(*args)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.integration
def test_distributed_evaluation_rows_are_complete(tmp_path):
    from culture_neurons.evaluation.api import read_rows

    model, examples = _save_model(tmp_path, n=7)  # uneven: ranks get 4 and 3
    single, double = tmp_path / "single", tmp_path / "double"
    common = ["-m", model, "-b", examples, "--scorer", "choice", "--n-boot", 50, "--device", "cpu", "-q"]
    assert _cli("evaluate", *common, "-o", single).wait() == 0
    proc = _torchrun("evaluate", *common, "-o", double)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    a, b = read_rows(single / "rows.parquet"), read_rows(double / "rows.parquet")
    assert list(b["id"]) == list(a["id"]) and len(set(b["id"])) == 7
    assert list(a["prediction"]) == list(b["prediction"]) and list(a["correct"]) == list(b["correct"])
    assert (
        json.loads((single / "summary.json").read_text())["results"]
        == json.loads((double / "summary.json").read_text())["results"]
    )


def test_model_split_over_a_device_map_scores_the_same(tmp_path, tokenizer):
    from culture_neurons.models.loading import load_model

    path, _ = _save_model(tmp_path)
    whole, tok = load_model(path, device="cpu")
    # Layer 1 offloaded to disk: accelerate's hooks move its weights in for each forward pass, the
    # path a model larger than its GPUs takes.
    layout = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    split, _ = load_model(path, device_map=layout, offload_folder=str(tmp_path / "offload"))
    assert split.hf_device_map["model.layers.1"] == "disk"
    assert split.model.layers[1].mlp.up_proj.weight.device.type == "meta"
    a = score_examples(whole, tok, make_examples(5), batch_size=2, progress=False)
    b = score_examples(split, tok, make_examples(5), batch_size=2, progress=False)
    assert all(torch.equal(a.scores[s], b.scores[s]) for s in a.sites)


@pytest.mark.integration
def test_killing_one_rank_fails_the_job_and_resume_completes(tmp_path):
    import psutil

    model, examples = _save_model(tmp_path, n=120)
    args = ["score", "-m", model, "-e", examples, "--batch-size", 1, "--device", "cpu", "-q"]
    reference = tmp_path / "ref.safetensors"
    proc = _torchrun(*args, "-o", reference, "--checkpoint-every", 0)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    out = tmp_path / "s.safetensors"
    ckpt1 = tmp_path / "s.safetensors.ckpt.rank1"
    proc = _torchrun(*args, "-o", out, "--checkpoint-every", 1)
    wait_for(proc, scoring_checkpoint_at(ckpt1, 1), "rank 1's scoring checkpoint 1 of 59")
    workers = [
        c for c in psutil.Process(proc.pid).children(recursive=True) if "culture_neurons" in " ".join(c.cmdline())
    ]
    victim = next(w for w in workers if w.environ().get("RANK") == "1")
    victim.send_signal(signal.SIGKILL)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, log[-2000:]
    assert "Signal 9" in log or "SIGKILL" in log, log[-2000:]  # torchrun names the dead rank's signal
    assert not out.exists()
    from safetensors import safe_open

    for rank in (0, 1):
        path = tmp_path / f"s.safetensors.ckpt.rank{rank}"
        if path.exists():  # a checkpoint left behind is whole and readable
            with safe_open(str(path), framework="pt") as fh:
                assert "counts" in fh.keys()  # noqa: SIM118 - safe_open handles are not dicts
    proc = _torchrun(*args, "-o", out, "--checkpoint-every", 1)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    a, b = ScoreTable.load(reference), ScoreTable.load(out)
    assert all(torch.equal(a.scores[s], b.scores[s]) for s in a.sites)
    assert not list(tmp_path.glob("s.safetensors.ckpt*"))
