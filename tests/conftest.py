"""Shared fixtures; the builders live in tiny.py."""

from __future__ import annotations

import pytest
import torch
from tiny import build_tokenizer, tiny_model


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="Device for model tests (cpu, cuda).")


def pytest_configure(config):
    import tiny

    tiny.DEFAULT_DEVICE = config.getoption("--device")


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
