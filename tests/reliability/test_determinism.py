"""Two full runs of the tiny pipeline give the same files, byte for byte (the manifest up to its timestamps)."""

from __future__ import annotations

import json
from pathlib import Path

from culture_neurons.pipeline import run_pipeline
from tests.pipeline_helpers import save_tiny_model, tiny_run_config

# The manifest's only run-dependent fields: when things happened and how long they took.
VOLATILE = {"created", "updated", "started", "finished", "seconds", "examples_per_s", "sittings"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in VOLATILE}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def test_two_full_runs_are_byte_identical(tmp_path, monkeypatch):
    model = save_tiny_model(tmp_path / "model")
    runs = []
    for name in ("a", "b"):
        # The same relative run directory from two working directories, so the configs are equal too.
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        run_pipeline(tiny_run_config(model, Path("run")), progress=False)
        runs.append(_files(tmp_path / name / "run"))
    a, b = runs
    assert a.keys() == b.keys()
    assert len(a) > 30 and "report.html" in a and any(k.endswith(".png") for k in a)
    different = sorted(k for k in a if k != "manifest.json" and a[k] != b[k])
    assert not different, f"files that differ between two identical runs: {different}"
    ma, mb = (json.loads(x["manifest.json"]) for x in runs)
    assert _strip(ma) == _strip(mb)
