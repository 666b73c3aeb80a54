"""The scoring engine against an independent naive reference, plus invariances and safety."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.attribution.engine import score_examples
from culture_neurons.errors import ScoringError
from culture_neurons.models.adapters import get_adapter
from tests.tiny import FAMILIES, assert_close, make_examples, tiny_model


def naive_scores(model, tokenizer, examples, groups, control=False, aggregation="max"):
    """Slow, obviously-correct reference: one example at a time, retain_grad on each site output.

    It computes weight gradients too and uses no padding, no logits_to_keep and no index_add_.
    """
    adapter = get_adapter(model)
    out = {s: torch.zeros(adapter.num_layers, w, len(groups), dtype=torch.float64) for s, w in adapter.widths.items()}
    for ex in examples:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": ex.prompt}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(text + ex.answer, add_special_tokens=False)["input_ids"]
        target = full_ids[len(prompt_ids)]
        captured = {}
        handles = []
        for site_name, site in adapter.sites.items():
            for layer, module in enumerate(site.modules):

                def hook(_m, _i, output, key=(site_name, layer), captured=captured):
                    output.retain_grad()
                    captured[key] = output

                handles.append(module.register_forward_hook(hook))
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=torch.tensor([prompt_ids], device=model.device)).logits[0, -1]
        p = torch.softmax(logits.double(), -1)[target]
        p.backward()
        for h in handles:
            h.remove()
        g = groups.index(ex.group)
        for (site_name, layer), output in captured.items():
            site = adapter.sites[site_name]
            a = site.take(output.detach())[0].double()
            grad = site.take(output.grad)[0].double()
            per_position = a * grad  # [T, C]
            for c in range(per_position.shape[1]):  # deliberately per neuron
                column = per_position[:, c]
                value = {"max": column.max(), "sum": column.sum(), "last": column[-1]}[aggregation]
                value = p.detach() * value
                if control:
                    value = value.clamp(min=0)
                out[site_name][layer, c, g] += value.cpu()
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("aggregation", ["max", "sum", "last"])
@pytest.mark.parametrize("control", [False, True])
def test_matches_naive_reference(tokenizer, llama, aggregation, control):
    examples = make_examples(5)
    groups = ["Japan", "Mexico", "Spain"]
    table = score_examples(
        llama, tokenizer, examples, batch_size=3, aggregation=aggregation, control=control, progress=False
    )
    assert table.groups == groups
    assert table.counts.tolist() == [2, 2, 1]
    assert_close(table, naive_scores(llama, tokenizer, examples, groups, control, aggregation))
    if control:
        assert all((t >= 0).all() for t in table.scores.values())
    elif aggregation != "max":  # a max over many positions is rarely negative; sums and last values often are
        assert any((t < 0).any() for t in table.scores.values())


@pytest.mark.parametrize("family", ["phi3", "gpt2", "gpt_neox", "gemma3"])
def test_fused_and_wrapped_families_match_naive_reference(tokenizer, family):
    model = tiny_model(family)
    examples = make_examples(3)
    groups = ["Japan", "Mexico", "Spain"]
    table = score_examples(model, tokenizer, examples, batch_size=2, progress=False)
    assert_close(table, naive_scores(model, tokenizer, examples, groups))


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batch_invariance(tokenizer, llama, padding_side):
    examples = make_examples(7)
    batched = score_examples(llama, tokenizer, examples, batch_size=4, padding_side=padding_side, progress=False)
    alone = None
    for ex in examples:
        one = score_examples(llama, tokenizer, [ex], groups=batched.groups, batch_size=1, progress=False)
        alone = one if alone is None else alone + one
    assert_close(batched, {s: t.double() for s, t in alone.scores.items()})
    assert torch.allclose(batched.prob_sums, alone.prob_sums, rtol=1e-6)


def test_reference_compat_padding_quirk(tokenizer, llama):
    from culture_neurons.data import Example

    # Equal-length prompts need no padding, so the quirk cannot matter.
    same = [
        Example(id=f"s{i}", prompt=f"Question {i}: which country eats rice? Answer:", answer=" A", group="Japan")
        for i in (3, 5, 7)
    ]
    lengths = {
        len(
            tokenizer(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": e.prompt}], tokenize=False, add_generation_prompt=True
                )
            )["input_ids"]
        )
        for e in same
    }
    assert len(lengths) == 1
    a = score_examples(llama, tokenizer, same, batch_size=3, reference_compat=True, progress=False)
    b = score_examples(llama, tokenizer, same, batch_size=1, reference_compat=True, progress=False)
    assert_close(a, {s: t.double() for s, t in b.scores.items()})
    # With padding, zero-filled pads make padded rows' maxima never negative: the quirk shows.
    # Short raw prompts make all-negative channels common.
    varied = [Example(id=f"v{n}", prompt="tea" + " rice" * n, answer=" A", group="Japan") for n in range(4)]
    quirk = score_examples(
        llama, tokenizer, varied, batch_size=4, reference_compat=True, chat_template=False, progress=False
    )
    exact = score_examples(llama, tokenizer, varied, batch_size=4, chat_template=False, progress=False)
    assert any(not torch.allclose(quirk.scores[s], exact.scores[s]) for s in exact.sites)
    assert all((quirk.scores[s] >= exact.scores[s] - 1e-12).all() for s in exact.sites)


def test_parameters_and_modes_are_restored(tokenizer):
    model = tiny_model("llama")
    model.train()
    model.lm_head.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    score_examples(model, tokenizer, make_examples(4), batch_size=2, progress=False)
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks for m in model.modules())


def test_hooks_removed_after_an_error(tokenizer, llama):
    from culture_neurons.data import Example

    with pytest.raises(ScoringError):
        score_examples(llama, tokenizer, [Example(id="x", prompt="Q?", answer="  ", group="g")], progress=False)
    bad = make_examples(2) + [make_examples(3)[2].__class__(id="nan", prompt="Q", answer=" A", group="Japan")]
    llama.model.layers[1].mlp.down_proj.weight.data[0, 0] = float("nan")
    with pytest.raises(ScoringError, match="NaN"):
        score_examples(llama, tokenizer, bad, progress=False)
    assert not any(m._forward_hooks for m in llama.modules())


def test_nan_in_gradients_only_names_the_batch(tokenizer, llama):
    def poison(_m, _i, out):
        out.register_hook(lambda g: g * float("nan"))

    handle = llama.model.layers[1].mlp.up_proj.register_forward_hook(poison)
    try:
        with pytest.raises(ScoringError, match=r"NaN or inf in neuron scores in the batch with examples \['ex"):
            score_examples(llama, tokenizer, make_examples(3), batch_size=2, progress=False)
    finally:
        handle.remove()


def test_ambiguous_answer_token_names_the_example(tokenizer, llama):
    from culture_neurons.data import Example

    # "Ans" + "wer" tokenises as "A n swer": the answer has no first token of its own.
    ex = Example(id="merge-me", prompt="Which country? Ans", answer="wer", group="Japan")
    with pytest.raises(ScoringError, match="merge-me"):
        score_examples(llama, tokenizer, [ex], chat_template=False, progress=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_scores_all_sites(tokenizer, family):
    model = tiny_model(family)
    table = score_examples(model, tokenizer, make_examples(3), batch_size=3, progress=False)
    adapter = get_adapter(model)
    assert table.widths == adapter.widths
    assert table.num_layers == 2
    assert all(torch.isfinite(t).all() and t.abs().sum() > 0 for t in table.scores.values())


def test_phi3_fused_equals_llama_unfused(tokenizer):
    """Phi3 with weights copied from a Llama (q|k|v and gate|up concatenated) gives the same scores."""
    llama = tiny_model("llama", seed=3)
    phi = tiny_model("phi3", seed=4)
    src = llama.state_dict()
    dst = {}
    for k, v in src.items():
        if ".self_attn.q_proj." in k:
            pre = k.split(".self_attn.")[0]
            dst[f"{pre}.self_attn.qkv_proj.weight"] = torch.cat(
                [src[f"{pre}.self_attn.{n}_proj.weight"] for n in "qkv"]
            )
        elif ".mlp.gate_proj." in k:
            pre = k.split(".mlp.")[0]
            dst[f"{pre}.mlp.gate_up_proj.weight"] = torch.cat(
                [src[f"{pre}.mlp.gate_proj.weight"], src[f"{pre}.mlp.up_proj.weight"]]
            )
        elif any(s in k for s in (".k_proj.", ".v_proj.", ".up_proj.")):
            continue
        else:
            dst[k] = v
    missing, unexpected = phi.load_state_dict(dst, strict=False)
    assert not unexpected and not missing
    ids = torch.tensor([[1, 8, 9, 10, 11]])
    with torch.no_grad():
        assert torch.allclose(llama(input_ids=ids).logits, phi(input_ids=ids).logits, atol=1e-5)
    examples = make_examples(4)
    a = score_examples(llama, tokenizer, examples, batch_size=2, progress=False)
    b = score_examples(phi, tokenizer, examples, batch_size=2, progress=False)
    assert a.widths == b.widths
    assert_close(b, {s: t.double() for s, t in a.scores.items()}, rtol=1e-4)


def test_bfloat16_scores_track_float32(tokenizer):
    model = tiny_model("llama")
    examples = make_examples(4)
    exact = score_examples(model, tokenizer, examples, batch_size=2, progress=False)
    half = score_examples(model.to(torch.bfloat16), tokenizer, examples, batch_size=2, progress=False)
    assert half.meta["options"]["dtype"] == "bfloat16"
    for site in exact.sites:
        assert half.scores[site].dtype == torch.float32  # accumulators stay float32 whatever the model dtype
        a, b = exact.scores[site].flatten(), half.scores[site].flatten()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9, site
