"""The ``choice`` target with a shared prompt (prompt once, options from its KV cache) against the
original path, kept in the engine as ``share_prompt=False``, where every option row recomputes the
prompt (that path is itself checked against a naive per-option reference in test_targets.py)."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.attribution.batching import target_rows
from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions
from culture_neurons.data import Example
from culture_neurons.likelihood import packs, shared_prefix_forward
from tests.tiny import FAMILIES, assert_close, tiny_model

OPTIONS = [
    ("tea", "rice and bread", "sushi", "Mexico and Spain in winter"),
    ("Japan", "Mexico", "Spain", "Korea"),
    ("noon", "breakfast with tea", "tacos", "paella"),
]


def items(n: int = 5) -> list[Example]:
    """Four-option items with prompts of different lengths and options of one to several tokens."""
    return [
        Example(
            id=f"c{i}",
            prompt=f"Question {i}: which one fits {'best ' * (i % 3)}here?",
            answer="ABCD"[(i * 3) % 4],
            group=["Japan", "Mexico"][i % 2],
            options=OPTIONS[i % 3],
            labels=("A", "B", "C", "D"),
        )
        for i in range(n)
    ]


def both(model, tokenizer, examples, share=True, **options):
    """The shared path (``True``: packed where the model allows, ``"cache"``: from the KV cache) and the stacked one."""
    opts = ScoringOptions(target="choice", **options)
    shared = ScoringEngine(model, tokenizer, opts, share_prompt=share).score(examples, progress=False)
    stacked = ScoringEngine(model, tokenizer, opts, share_prompt=False).score(examples, progress=False)
    return shared, stacked


def assert_same(shared, stacked) -> None:
    assert shared.groups == stacked.groups and torch.equal(shared.counts, stacked.counts)
    assert_close(shared, {s: t.double() for s, t in stacked.scores.items()}, rtol=1e-5)
    assert torch.allclose(shared.prob_sums, stacked.prob_sums, rtol=1e-5)


@pytest.mark.parametrize("share", [True, "cache"])
@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prompt_equals_recomputed_prompt_in_every_family(tokenizer, family, share):
    """Fused sites (phi3, gpt2, gpt_neox), sliding windows (gemma2/3: rows longer than the window of 16
    take the cache path), a wrapped multimodal model (gemma3)."""
    model = tiny_model(family)
    assert_same(*both(model, tokenizer, items(5), share, batch_size=3))


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_packed_prompt_equals_recomputed_prompt_within_the_window(tokenizer, family):
    """With a window longer than every row the windowed families take the packed path too."""
    model = tiny_model(family)
    model.config.get_text_config().sliding_window = 128
    rows = [r for rs in target_rows(tokenizer, items(5), "choice") for r in rs]
    assert packs(model, rows)
    assert_same(*both(model, tokenizer, items(5), batch_size=3))


@pytest.mark.parametrize("share", [True, "cache"])
@pytest.mark.parametrize("aggregation", ["max", "sum", "last"])
@pytest.mark.parametrize("control", [False, True])
def test_shared_prompt_equals_recomputed_prompt_for_each_aggregation(tokenizer, llama, aggregation, control, share):
    assert_same(*both(llama, tokenizer, items(6), share, batch_size=4, aggregation=aggregation, control=control))


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padding_side_does_not_matter(tokenizer, llama, padding_side):
    """The padding option is the label/answer targets'; both choice paths give the same table with either."""
    assert_same(*both(llama, tokenizer, items(5), batch_size=2, padding_side=padding_side))


def test_continuation_mask_marks_each_rows_own_tokens(tokenizer, llama):
    """Only a row's own input tokens count in the max: not padding, nor the last target token that a
    shorter row also reads (its gradient is 0, and a stray 0 would clip an all-negative channel)."""
    rows = [r for rs in target_rows(tokenizer, items(3), "choice") for r in rs]
    out = shared_prefix_forward(llama, rows, tokenizer.pad_token_id)
    assert out.cont_mask.sum(1).tolist() == [len(r.targets) - 1 for r in rows]
    assert out.prompt_mask.sum(1).tolist() == [rows[0].prompt_len, rows[4].prompt_len, rows[8].prompt_len]


def test_single_token_options_skip_the_continuation_pass(tokenizer, llama):
    """When every option is one token, only the prompt pass runs; the scores are still the same."""
    examples = [
        Example(
            id=f"s{i}",
            prompt=f"Pick {'one ' * i}letter:",
            answer="B",
            group="Japan",
            options=("A", "B", "C", "D"),
            labels=("A", "B", "C", "D"),
        )
        for i in range(3)
    ]
    assert_same(*both(llama, tokenizer, examples, batch_size=3))
    assert_same(*both(llama, tokenizer, examples, "cache", batch_size=3))


def test_each_prompt_runs_once(tokenizer, llama):
    """The shared path feeds the model each prompt once plus the option tokens.

    The original feeds the prompt per option.
    """
    seen = {"tokens": 0}

    def count(_m, inputs, _out):
        seen["tokens"] += int((inputs[0] != tokenizer.pad_token_id).sum())

    examples = items(4)
    handle = llama.get_input_embeddings().register_forward_hook(count)
    try:
        tokens = {}
        for share in (True, "cache", False):
            seen["tokens"] = 0
            ScoringEngine(llama, tokenizer, ScoringOptions(target="choice", batch_size=4), share_prompt=share).score(
                examples, progress=False
            )
            tokens[share] = seen["tokens"]
    finally:
        handle.remove()
    per_example = target_rows(tokenizer, examples, "choice", use_chat_template=True)
    prompt = sum(rs[0].prompt_len for rs in per_example)
    continuations = sum(len(r.input_ids) - r.prompt_len for rs in per_example for r in rs)
    assert tokens[True] == prompt + continuations  # packed: every prompt and option token exactly once
    # From the cache, a row shorter than the batch's longest continuation also reads its last token.
    assert prompt + continuations <= tokens["cache"] <= prompt + continuations + sum(map(len, per_example))
    assert tokens[False] == sum(len(r.input_ids) for rs in per_example for r in rs)
    assert tokens[False] > 3 * prompt


def test_default_shares_when_the_model_takes_a_cache(tokenizer, llama):
    assert ScoringEngine(llama, tokenizer, ScoringOptions(target="choice")).share_prompt
