"""Builders for the pipeline and report tests: a tiny random model on disk and a small run config."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from tests.tiny import build_tokenizer, tiny_model


def save_tiny_model(folder: Path) -> Path:
    """A 2-layer random Llama and the tiny tokenizer, saved as a Hugging Face folder."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        tiny_model("llama", device="cpu").save_pretrained(folder)
        build_tokenizer().save_pretrained(folder)
    return folder


def tiny_run_config(model_dir: Path, out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete pipeline config on the built-in demo data, sized to run in seconds on the tiny model."""
    config: dict[str, Any] = {
        "run": {"out": str(out), "title": "tiny test run"},
        "model": {"name": str(model_dir), "device": "cpu"},
        "data": {"countries": ["Iran", "Mexico", "Spain"], "templates": "cloze", "chat_template": False},
        "score": {
            "datasets": ["demo-culture"],
            "controls": ["demo-control"],
            "countryrc": "countryrc",
            "max_per_group": 3,
            "target": "choice",
            "batch_size": 4,
            "checkpoint_every": 1,
        },
        "select": {
            "general": {"t_mlp": 0.05, "t_attn": 0.02},
            "specific": {"t": 0.05, "z": 0.0},
            "random": {"seeds": 2},
        },
        "evaluate": {
            "benchmarks": ["demo-culture", "demo-nlu"],
            "max_per_group": 2,
            "scorer": "loglik",
            "batch_size": 8,
            "n_boot": 50,
        },
        "report": {"top_neurons": 5},
    }
    for name, values in sections.items():
        node = config.setdefault(name, {})
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                node[key].update(value)
            else:
                node[key] = value
    return config


_SHARED: dict[str, Any] = {}


def shared_run(tmp_path_factory) -> tuple[Path, Any]:
    """One complete tiny run per test session, shared by the pipeline and report tests (read-only use)."""
    if "run" not in _SHARED:
        from culture_neurons.pipeline import run_pipeline

        root = tmp_path_factory.mktemp("shared-run")
        model = save_tiny_model(root / "tiny-llama")
        out = root / "run"
        _SHARED["run"] = (out, run_pipeline(tiny_run_config(model, out), progress=False), model)
    return _SHARED["run"]


def free_port() -> int:
    """A TCP port nothing listens on now: torchrun's rendezvous port, so concurrent test runs never collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(*args: object) -> list[str]:
    """``culture-neurons ARGS`` under torchrun with two ranks, on a fresh free rendezvous port."""
    head = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    return [*head, "-m", "culture_neurons", *map(str, args)]
