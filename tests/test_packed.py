"""Packed option rows (likelihood/packed.py): an example's prompt and options in one sequence under a
custom attention mask, against the KV-cache path and against one full row per option."""

from __future__ import annotations

import contextlib

import pytest
import torch

from culture_neurons.data import Example
from culture_neurons.intervention import intervene
from culture_neurons.likelihood import (
    collate_rows,
    continuation_logprobs,
    option_rows,
    packed_option_logprobs,
    packs,
    prompt_texts,
    shared_prefix_logprobs,
)
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection import NeuronSet
from tests.tiny import FAMILIES, tiny_model


def examples(n: int = 5) -> list[Example]:
    """Prompts of different lengths; options of one to several tokens, one of them a single token."""
    options = [("Japan", "Mexico and Spain in winter", "Iran", "tea with rice"), ("a", "b c", "d e f g", "h")]
    return [
        Example(
            id=f"p{i}",
            prompt=f"Question {i}: " + "which fits? " * (1 + i % 3) + "Answer:",
            answer=options[i % 2][1],
            group="Japan",
            options=options[i % 2],
        )
        for i in range(n)
    ]


def rows_of(tokenizer, exs):
    prompts, add = prompt_texts(tokenizer, exs, False)
    return [r for rs in option_rows(tokenizer, exs, prompts, add) for r in rs]


def full_rows(model, rows, pad_id):
    """The independent reference: every option row as its own right-padded sequence."""
    by_example: dict[int, list] = {}
    for r in rows:
        by_example.setdefault(r.example, []).append(r)
    batch = collate_rows(list(by_example), list(by_example.values()), pad_id, "right")
    return continuation_logprobs(model, batch), batch.score_valid


def some_neurons(model) -> NeuronSet:
    adapter = get_adapter(model)
    site = "mlp.gate" if "mlp.gate" in adapter.widths else "mlp.in"
    return NeuronSet.from_columns(
        [site, site, "attn.v"], [0, 1, 1], [0, 5, 3], num_layers=adapter.num_layers, widths=adapter.widths
    )


@pytest.mark.parametrize(
    "family, attn", [(f, None) for f in FAMILIES] + [(f, "eager") for f in ("llama", "gpt2", "gemma3")]
)
def test_packed_equals_cache_and_full_rows(tokenizer, family, attn):
    """Every family with its default attention, eager on one family per attention layout, with and
    without an intervention on every position."""
    model = tiny_model(family, attn=attn)
    config = model.config.get_text_config()
    if getattr(config, "sliding_window", None):
        config.sliding_window = 128  # longer than every row, so the windowed families pack too
    rows = rows_of(tokenizer, examples())
    assert packs(model, rows)
    pad = tokenizer.pad_token_id
    for active in (False, True):
        with torch.no_grad(), intervene(model, some_neurons(model)) if active else contextlib.nullcontext():
            packed, valid = packed_option_logprobs(model, rows, pad)
            cached, cached_valid = shared_prefix_logprobs(model, rows, pad)
            full, full_valid = full_rows(model, rows, pad)
        assert torch.equal(valid, cached_valid) and torch.equal(valid, full_valid.cpu())
        assert torch.allclose(packed, cached, atol=1e-5), (family, active)
        assert torch.allclose(packed, full.cpu(), atol=1e-5), (family, active)


def test_packs_only_where_the_custom_mask_is_safe(tokenizer):
    rows = rows_of(tokenizer, examples())
    windowed = tiny_model("gemma2")  # sliding window 16: shorter than these rows
    assert max(len(r.input_ids) for r in rows) > 16 and not packs(windowed, rows)
    llama = tiny_model("llama")
    assert packs(llama, rows)
    llama.config._attn_implementation = "flash_attention_2"  # reads no 4-D mask
    assert not packs(llama, rows)


def test_loglik_scorer_packs_and_falls_back_to_the_cache(tokenizer, monkeypatch):
    """option_logliks packs where it can and takes the cache path where the window is too short; both
    give the one-row-per-option log-likelihoods."""
    from culture_neurons.likelihood import logprobs as module
    from culture_neurons.likelihood import option_logliks

    calls = []
    monkeypatch.setattr(
        module, "packed_option_logprobs", lambda *a: calls.append("packed") or packed_option_logprobs(*a)
    )
    monkeypatch.setattr(
        module, "shared_prefix_logprobs", lambda *a: calls.append("cache") or shared_prefix_logprobs(*a)
    )
    exs = examples()
    for family, path in (("llama", "packed"), ("gemma2", "cache")):
        calls.clear()
        model = tiny_model(family)
        shared = option_logliks(model, tokenizer, exs, batch_size=2, use_chat_template=False)
        full = option_logliks(model, tokenizer, exs, batch_size=2, use_chat_template=False, shared_prefix=False)
        assert set(calls) == {path}
        assert torch.allclose(torch.tensor(shared), torch.tensor(full), atol=1e-5)


def test_rows_that_do_not_share_their_prompt_are_refused(tokenizer):
    from culture_neurons.errors import ScoringError
    from culture_neurons.likelihood import Row

    rows = [Row(0, 0, 2, (5, 6, 7), (7, 8)), Row(0, 1, 2, (5, 9, 7), (7, 8))]
    with pytest.raises(ScoringError, match="do not share their prompt"):
        packed_option_logprobs(tiny_model("llama"), rows, 0)
