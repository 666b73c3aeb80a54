"""The pipeline's ``train`` stage and the report's fine-tuning chart on a tiny random model, plus
kill-and-resume of ``culture-neurons train`` (a real SIGKILL, and a checkpoint half-written by one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from culture_neurons.data import read_examples, write_examples
from culture_neurons.pipeline import ConfigError, run_pipeline
from tests.kill import kill_when, training_checkpoint_at
from tests.pipeline_helpers import save_tiny_model, tiny_run_config
from tests.tiny import make_examples, tiny_model

# Small enough for seconds: no ablation/cross-culture experiments (the train stage still gets the
# exported evaluation examples), one evaluation example per group, two optimizer steps per set.
SMALL = {
    "score": {"max_per_group": 1, "batch_size": 4, "checkpoint_every": 0},
    "select": {"specific": {"enabled": False}, "random": {"seeds": 0}},
    "evaluate": {"experiments": [], "max_per_group": 1},
}
TRAIN = {
    "budget": 0.3,
    "max_examples": 8,
    "batch_size": 4,
    "micro_batch_size": 2,
    "lr": 1e-3,
    "n_boot": 50,
    "save_steps": 1000,
}
ORDER = ("mlp", "attn")


def config(model_dir: Path, out: Path, **train) -> dict:
    return tiny_run_config(model_dir, out, **SMALL, train={**TRAIN, **train})


def _status(result) -> dict[str, str]:
    return {s.key: s.status for s in result.steps}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-stage")
    model = save_tiny_model(root / "tiny-llama")
    out = root / "run"
    return model, out, run_pipeline(config(model, out), progress=False)


def _oracle_sets(general: dict, params: dict[str, int], total: int, budget: float) -> tuple[list[str], set[str]]:
    """Top set and neuron-free modules, counted from the NeuronSet JSON with plain Python."""
    counts = {name: 0 for name in params}
    for n in general["neurons"]:
        counts[f"{n['site'].split('.')[0]}.{n['layer']}"] += 1
    ranked = sorted(counts, key=lambda m: (-counts[m], int(m.split(".")[1]), ORDER.index(m.split(".")[0])))
    top, used = [], 0
    for m in ranked:
        if counts[m] and used + params[m] <= int(budget * total):
            top.append(m)
            used += params[m]
    return top, {m for m, c in counts.items() if c == 0}


def test_train_stage_runs_and_writes_the_comparison(trained):
    model_dir, out, result = trained
    status = _status(result)
    assert set(status.values()) == {"ran"} and status["train"] == "ran"
    assert [s.stage for s in result.steps if s.key == "train"] == ["train"]
    for rel in (
        "train/finetune.json",
        "train/ranking.csv",
        "train/modules.json",
        "train/eval/summary.json",
        "train/eval/rows.parquet",
        *(
            f"train/{s}/{f}"
            for s in ("top", "bottom", "random")
            for f in ("model.safetensors", "config.json", "training.json")
        ),
    ):
        assert (out / rel).is_file(), rel
    assert not list(out.rglob("checkpoints")) and not list(out.rglob("*.tmp"))
    # the step records the small files only: no model weights are hashed on every rerun
    outputs = json.loads((out / "manifest.json").read_text())["steps"]["train"]["outputs"]
    assert "train/finetune.json" in outputs and "train/top/training.json" in outputs
    assert not [p for p in outputs if p.endswith(".safetensors")]

    # the sets follow the run's culture-general neurons (counted independently here)
    base = tiny_model("llama", device="cpu")
    paths = {
        f"{k}.{i}": [
            f"model.layers.{i}.{p}"
            for p in (
                ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
                if k == "mlp"
                else ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
            )
        ]
        for k in ORDER
        for i in range(2)
    }
    params = {m: sum(base.get_parameter(f"{p}.weight").numel() for p in ps) for m, ps in paths.items()}
    total = sum(p.numel() for p in base.parameters())
    top, empty = _oracle_sets(json.loads((out / "neurons/general.json").read_text()), params, total, TRAIN["budget"])
    sets = json.loads((out / "train/modules.json").read_text())["sets"]
    assert top and sets["top"]["modules"] == top
    assert set(sets["bottom"]["modules"]) <= empty and sets["bottom"]["neurons"] == 0

    # only the chosen modules' weights moved, bit for bit, from the saved base model
    start = load_file(model_dir / "model.safetensors")
    for name in ("top", "bottom", "random"):
        tuned = load_file(out / "train" / name / "model.safetensors")
        owned = {f"{p}.weight" for m in sets[name]["modules"] for p in paths[m]}
        moved = {k for k in start if not torch.equal(start[k], tuned[k])}
        assert moved == owned, name
        record = json.loads((out / "train" / name / "training.json").read_text())
        assert (
            record["examples"] == TRAIN["max_examples"]
            and record["steps"] == 2
            and record["config"]["learning_rate"] == TRAIN["lr"]
        )

    # every benchmark is compared on the run's exported evaluation examples
    summary = json.loads((out / "train/eval/summary.json").read_text())["results"]
    assert set(summary) == {"demo-culture", "demo-nlu"}
    for bench, entry in summary.items():
        exported = read_examples(out / f"examples/eval-{bench}.jsonl")
        block = entry["all"]
        assert block["base"]["n"] == len(exported)
        for name in ("top", "bottom", "random"):
            change = block[name]["change"]
            assert change["ci_low"] <= change["value"] <= change["ci_high"]
            assert block[name]["value"]["value"] == pytest.approx(block["base"]["value"] + change["value"])
    info = json.loads((out / "manifest.json").read_text())["steps"]["train"]["info"]
    assert info["changes"]["demo-culture"]["top"] == summary["demo-culture"]["all"]["top"]["change"]["value"]


def test_report_has_the_training_chart(trained):
    _, out, _ = trained
    html = (out / "report.html").read_text()
    assert '<h2 id="train">Selective fine-tuning</h2>' in html
    assert 'alt="fine-tuning change from base per benchmark"' in html and (out / "figures/finetune.png").is_file()
    summary = json.loads((out / "train/eval/summary.json").read_text())["results"]
    section = html.split('id="train"', 1)[1].split("<h2", 1)[0]
    for bench, entry in summary.items():
        change = entry["all"]["top"]["change"]
        assert f"{change['value']:+.1f} [{change['ci_low']:+.1f}, {change['ci_high']:+.1f}]" in section
        assert f"<td class=l>{bench}</td>" in section
    assert section.index("top Δ") < section.index("bottom Δ") < section.index("random Δ")


def test_report_without_a_train_stage_still_renders(trained, tmp_path):
    from culture_neurons.analysis.report import build_report

    _, out, _ = trained
    manifest = json.loads((out / "manifest.json").read_text())
    html, figures = build_report(tmp_path, manifest=manifest)  # a run directory with no train/ at all
    assert "Config and provenance" in html and 'id="train"' not in html
    partial = tmp_path / "partial"
    (partial / "train").mkdir(parents=True)
    done = json.loads((out / "train/finetune.json").read_text())
    (partial / "train/finetune.json").write_text(json.dumps({**done, "results": None}))
    html, figures = build_report(partial, manifest=manifest)
    assert 'id="train"' in html and "nothing to compare" in html and "finetune" not in [n for n, _ in figures]


def test_rerun_skips_everything(trained):
    model_dir, out, _ = trained
    before = _mtimes(out)
    again = run_pipeline(config(model_dir, out), progress=False)
    assert set(_status(again).values()) == {"skipped"}
    after = _mtimes(out)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }


def test_changing_lr_reruns_only_train_and_report(trained, tmp_path, monkeypatch):
    model_dir, original, _ = trained
    out = tmp_path / "run"
    shutil.copytree(original, out)
    from culture_neurons.attribution import engine

    monkeypatch.setattr(
        engine.ScoringEngine, "score", lambda *a, **k: pytest.fail("scoring must not rerun when only [train] changed")
    )
    changed = config(model_dir, out, lr=5e-3)
    plan = _status(run_pipeline(changed, progress=False, dry_run=True))
    assert {k for k, v in plan.items() if v == "would run"} == {"train", "report"}
    status = _status(run_pipeline(changed, progress=False))
    assert {k for k, v in status.items() if v == "ran"} == {"train", "report"}
    assert all(v == "skipped" for k, v in status.items() if k not in ("train", "report"))
    for name in ("top", "bottom", "random"):  # retrained in place (the old folders held another lr)
        assert json.loads((out / "train" / name / "training.json").read_text())["config"]["learning_rate"] == 5e-3
        old, new = (
            load_file(original / "train" / name / "model.safetensors"),
            load_file(out / "train" / name / "model.safetensors"),
        )
        assert any(not torch.equal(old[k], new[k]) for k in old)
    assert json.loads((out / "train/finetune.json").read_text())["config"]["learning_rate"] == 5e-3


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"learning_rate": 1e-3}, "unknown config key 'train.learning_rate'"),
        ({"lr": "fast"}, "config key 'train.lr' must be a number, got 'fast'"),
        ({"batch_size": 2.5}, "config key 'train.batch_size' must be an integer"),
        ({"modules": []}, "config key 'train.modules' is empty"),
        ({"modules": " , "}, "config key 'train.modules' is empty"),
        ({"modules": ["top", "mlp.x"]}, "config key 'train.modules' has 'mlp.x'"),
        ({"budget": 0}, "config key 'train.budget' must be a fraction of the model's parameters in (0, 1], got 0"),
        ({"data": "no-such-set"}, "config key 'train.data': unknown dataset 'no-such-set'"),
        ({"benchmarks": ["blend"]}, "config key 'train.benchmarks[0]': blend is not among evaluate.benchmarks"),
        ({"batch_size": 5}, "config key 'train.batch_size' (5) must be a multiple of train.micro_batch_size (2)"),
    ],
)
def test_bad_train_key_errors_before_any_work(tmp_path, monkeypatch, train, message):
    from culture_neurons.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("no work may start on a bad [train] table"))
    out = tmp_path / "run"
    cfg = config(tmp_path / "model", out)
    cfg["train"].update(train)
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, progress=False)
    assert message in str(info.value)
    assert not out.exists()


def test_top_needs_the_general_set(tmp_path):
    cfg = config(tmp_path / "model", tmp_path / "run", modules="top")
    cfg["select"]["general"] = {"enabled": False}
    cfg["evaluate"]["experiments"] = []
    with pytest.raises(ConfigError, match=r"'train.modules' asks for top or bottom.*select.general.enabled = true"):
        run_pipeline(cfg, progress=False)


# ---------------------------------------------------------------------------------------------
# kill and resume


class _Crash(Exception):
    pass


def test_resume_skips_a_checkpoint_half_written_by_a_kill(tmp_path, tokenizer):
    from transformers import TrainerCallback

    from culture_neurons.training import TrainConfig, choose_modules, finetune, rank_modules

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise _Crash(state.global_step)

    examples = make_examples(16)
    cfg = TrainConfig(learning_rate=1e-3, batch_size=4, micro_batch_size=2, save_steps=2, logging_steps=1)

    def fresh():
        model = tiny_model("llama", device="cpu")
        return model, choose_modules(rank_modules(model), "mlp.1,attn.0")

    ref, chosen = fresh()
    finetune(ref, tokenizer, examples, chosen, tmp_path / "ref", cfg, progress=False)
    model, chosen = fresh()
    with pytest.raises(_Crash):
        finetune(model, tokenizer, examples, chosen, tmp_path / "run", cfg, callbacks=[Crash()], progress=False)
    # What a SIGKILL while saving step 4 leaves: the folder and its first file, nothing else.
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "checkpoint-4").mkdir()
    (ckpts / "checkpoint-4" / "trainable.safetensors").write_bytes(b"\0" * 10)
    model, chosen = fresh()
    result = finetune(model, tokenizer, examples, chosen, tmp_path / "run", cfg, progress=False)
    assert result.resumed_from.endswith("checkpoint-2") and result.steps == 4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ref.state_dict().items())


def _train_cli(model_dir: Path, data: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [
        "train",
        "-m",
        model_dir,
        "--modules",
        "mlp.1,attn.0",
        "--data",
        data,
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
    return subprocess.Popen(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def _complete_checkpoints(folder: Path) -> list[Path]:
    done = []
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        done.append(path)
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


@pytest.mark.integration
def test_sigkill_during_training_then_resume_is_bit_identical(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    write_examples(data, make_examples(96))  # 24 optimizer steps, a checkpoint after each
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ref = _train_cli(model_dir, data, reference)  # the uninterrupted run, alongside on the other core
    proc = _train_cli(model_dir, data, killed)
    ckpts = killed / "checkpoints"
    kill_when(proc, training_checkpoint_at(ckpts, 1), "training checkpoint 1 of 24 complete")
    assert not (killed / "training.json").exists()
    newest = _complete_checkpoints(ckpts)[-1]  # rotation deletes old checkpoints only after a newer one is complete
    assert ref.wait(timeout=600) == 0
    assert _train_cli(model_dir, data, killed).wait(timeout=600) == 0
    record = json.loads((killed / "training.json").read_text())
    assert record["resumed_from"] == str(newest) and record["steps"] == 24
    a, b = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed / "checkpoints").exists() and not list(killed.glob(".model-*"))
