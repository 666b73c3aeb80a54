"""Fixtures of the reliability tests."""

from __future__ import annotations

import pytest

from tests.reliability.kit import build_kit


@pytest.fixture(scope="session")
def rkit(tmp_path_factory):
    """A tiny model, examples, score tables and a neuron set, shared read-only by the reliability tests."""
    return build_kit(tmp_path_factory.mktemp("rkit"))
