"""Gradient-based neuron attribution (the scoring engine) and the ScoreTable format."""

from .scoretable import ScoreTable

__all__ = ["ScoreTable", "ScoringOptions", "score_examples"]


def __getattr__(name: str):
    if name in ("ScoringOptions", "score_examples"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
