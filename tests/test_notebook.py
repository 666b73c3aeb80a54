"""examples/quickstart.ipynb runs top to bottom (nbclient), on a tiny random model saved to a folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import build_tokenizer, tiny_model

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.integration
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    model_dir = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(model_dir)
    build_tokenizer().save_pretrained(model_dir)
    monkeypatch.setenv("CN_MODEL", str(model_dir))
    monkeypatch.setenv("CN_PER_GROUP", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [
        "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")
        for cell in nb.cells
        if cell.cell_type == "code"
    ]
    assert outputs[0].startswith(f"loaded {model_dir}: llama")
    assert "held-out accuracy: original" in outputs[-1]
    frames = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if "data" in o]
    assert any("hf_module" in o["data"].get("text/plain", "") for o in frames)  # the NeuronSet frame rendered
