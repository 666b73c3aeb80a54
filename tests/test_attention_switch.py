"""Gradient passes run attention eagerly in half precision on a CPU (SDPA's CPU backward is slow there)."""

from __future__ import annotations

import pytest
import torch

import culture_neurons.models.attention as attention
from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions
from culture_neurons.models.adapters import text_config
from culture_neurons.models.attention import attention_for_backward
from tests.tiny import make_examples, tiny_model


def implementation(model) -> str:
    return text_config(model.config)._attn_implementation


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cpu_switches_to_eager_and_back(dtype):
    model = tiny_model("llama", attn="sdpa").to(dtype)
    assert implementation(model) == "sdpa"
    with attention_for_backward(model) as used:
        assert used == "eager" and implementation(model) == "eager"
    assert implementation(model) == "sdpa"
    with pytest.raises(RuntimeError), attention_for_backward(model):
        raise RuntimeError("boom")
    assert implementation(model) == "sdpa"


def test_float32_and_eager_models_are_left_alone():
    model = tiny_model("llama", attn="sdpa")
    with attention_for_backward(model) as used:
        assert used is None and implementation(model) == "sdpa"
    eager = tiny_model("llama", attn="eager").to(torch.bfloat16)
    with attention_for_backward(eager) as used:
        assert used is None and implementation(eager) == "eager"


def test_bfloat16_scoring_runs_eager_and_agrees_with_sdpa(tokenizer, monkeypatch):
    model = tiny_model("llama", attn="sdpa").to(torch.bfloat16)
    seen = []
    layer = model.model.layers[0].self_attn
    handle = layer.register_forward_pre_hook(lambda *_: seen.append(implementation(model)))
    examples = make_examples(6)
    options = ScoringOptions(batch_size=3, chat_template=False, target="label")
    switched = ScoringEngine(model, tokenizer, options).score(examples)
    assert set(seen) == {"eager"} and implementation(model) == "sdpa"
    seen.clear()

    @attention.contextlib.contextmanager
    def unchanged(_model):
        yield None

    monkeypatch.setattr("culture_neurons.models.hooks.attention_for_backward", unchanged)
    kept = ScoringEngine(model, tokenizer, options).score(examples)
    handle.remove()
    assert set(seen) == {"sdpa"}
    for site in kept.sites:
        ref, got = kept.scores[site].float(), switched.scores[site].float()
        assert (got - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-6, site
