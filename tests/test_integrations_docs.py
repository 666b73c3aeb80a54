"""Every ``python`` block of docs/integrations.md runs, in order, on a tiny random model.

Blocks whose first line is ``# requires: LIB`` run only where LIB is installed; elsewhere they are
compiled, so a syntax slip still fails.
"""

from __future__ import annotations

import importlib.util
import linecache
import re
from pathlib import Path

import pytest
import torch

from culture_neurons.attribution.scoretable import ScoreTable
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection import NeuronSet
from tests.tiny import build_tokenizer, tiny_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def prepare(folder: Path) -> Path:
    """A tiny model folder, a NeuronSet and a ScoreTable with the file names the recipes use."""
    model = tiny_model("llama")
    model.save_pretrained(folder / "tiny")
    build_tokenizer().save_pretrained(folder / "tiny")
    adapter = get_adapter(model)
    NeuronSet.from_columns(
        ["mlp.gate"] * 6 + ["attn.q"] * 2,
        [0, 0, 0, 1, 1, 1, 0, 1],
        [1, 5, 9, 2, 4, 8, 3, 17],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
        kind="general",
        num_layers=adapter.num_layers,
        widths=adapter.widths,
    ).save(folder / "general.json")
    gen = torch.Generator().manual_seed(0)
    scores = {s: torch.randn(adapter.num_layers, w, 2, generator=gen) for s, w in adapter.widths.items()}
    ScoreTable(
        scores,
        torch.tensor([3, 4]),
        torch.tensor([1.0, 2.0], dtype=torch.float64),
        ["Japan", "Spain"],
        {"dataset": "blend"},
    ).save(folder / "blend.safetensors")
    return folder / "tiny"


def test_the_doc_has_the_four_recipes():
    text = DOC.read_text(encoding="utf-8")
    for heading in ("## lm-evaluation-harness", "## pandas", "## TransformerLens", "## nnsight"):
        assert heading in text
    assert len(blocks()) >= 5


@pytest.mark.integration
def test_every_python_recipe_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_dir = prepare(tmp_path)
    namespace: dict = {}
    ran = []
    for i, code in enumerate(blocks()):
        first = code.splitlines()[0].strip()
        needs = first.removeprefix("# requires:").strip() if first.startswith("# requires:") else None
        if i == 0:
            assert 'MODEL = "smollm2-135m-instruct"' in code
            code = code.replace('"smollm2-135m-instruct"', repr(str(model_dir)))
        name = f"{DOC.name} block {i}"
        # nnsight (0.8+) reads a trace's `with` block from its source file; give the block one, as a file would
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        compiled = compile(code, name, "exec")
        if needs and importlib.util.find_spec(needs) is None:
            continue
        exec(compiled, namespace)
        ran.append(i)
    assert 0 in ran and len(ran) >= 3
    assert list(namespace["frame"].columns) == ["site", "layer", "index", "score", "hf_module", "channel", "tl_hook"]
    assert (tmp_path / "general.parquet").is_file()
    assert len(namespace["top"]) == 10 and namespace["top"]["tl_hook"].str.startswith("blocks.").all()
    if importlib.util.find_spec("lm_eval") is not None:
        assert set(namespace["accuracy"]) == {"original", "suppressed"}
        assert all(0.0 <= v <= 1.0 for v in namespace["accuracy"].values())
