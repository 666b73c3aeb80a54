"""Interventions: exact zeros/doubling on the chosen channels only, clean exit, fused sites, bad sets."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.errors import InputError
from culture_neurons.intervention import intervene
from culture_neurons.models.adapters import get_adapter
from culture_neurons.models.hooks import forward_hooks
from culture_neurons.selection import NeuronSet
from tests.tiny import tiny_model

IDS = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11], [9, 8, 7, 6, 5, 4, 3, 2]])


def make_set(model, rows, kind="custom"):
    adapter = get_adapter(model)
    sites, layers, indices = zip(*rows) if rows else ((), (), ())
    return NeuronSet.from_columns(
        list(sites), list(layers), list(indices), kind=kind, num_layers=adapter.num_layers, widths=adapter.widths
    )


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids.to(model.device)).logits


def module_outputs(model, points):
    """Run the model and return the raw output of each (site, layer) module, after any intervention hook."""
    adapter = get_adapter(model)
    seen = {}
    hooks = []
    for site, layer in points:
        module = adapter.sites[site].modules[layer]

        def probe(_m, _i, out, key=(site, layer)):
            seen[key] = (out[0] if isinstance(out, tuple) else out).detach().clone()

        hooks.append((module, probe))
    with forward_hooks(hooks):
        logits(model)
    return seen


def hooks_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("family", ["llama", "phi3", "gpt2", "gpt_neox", "qwen3"])
@pytest.mark.parametrize("op", ["suppress", "enhance"])
@pytest.mark.parametrize("part", ["mlp", "attn"])
def test_only_the_chosen_channels_change(family, op, part, device):
    # One block at a time: layer-0 sites of one block share an input that no intervention upstream changes.
    model = tiny_model(family, device=device)
    adapter = get_adapter(model)
    mlp = "mlp.gate" if "mlp.gate" in adapter.sites else "mlp.in"
    if part == "mlp":
        chosen = {mlp: [0, 5, 17, adapter.sites[mlp].width - 1]}
    else:
        chosen = {"attn.k": [1, 2, adapter.sites["attn.k"].width - 1], "attn.q": [3]}
    rows = [(site, 0, i) for site, idx in chosen.items() for i in idx]
    ns = make_set(model, rows)
    points = [(s, 0) for s in adapter.sites if s.startswith(part)]
    before = module_outputs(model, points)
    with intervene(model, ns, op=op) as info:
        assert info.neurons == len(rows)
        during = module_outputs(model, points)
    for site, _ in points:
        take = adapter.sites[site].take
        a, b = take(before[(site, 0)]), take(during[(site, 0)])
        idx = torch.tensor(chosen.get(site, []), dtype=torch.long)
        mask = torch.zeros(a.shape[-1], dtype=torch.bool)
        mask[idx] = True
        if op == "suppress":
            assert torch.equal(b[..., mask], torch.zeros_like(b[..., mask])), site
        else:
            assert torch.equal(b[..., mask], a[..., mask] * 2), site
        assert torch.equal(b[..., ~mask], a[..., ~mask]), f"{site}: other channels moved"  # layer 0 input is unchanged
    # every module output channel outside the chosen site channels is untouched (fused modules included)
    for site, _ in points:
        raw_a, raw_b = before[(site, 0)], during[(site, 0)]
        changed = (raw_a != raw_b).any(dim=(0, 1)).nonzero().squeeze(1)
        expected = set()
        for s, idx in chosen.items():
            if adapter.sites[s].modules[0] is adapter.sites[site].modules[0]:
                ch = adapter.sites[s].channels
                mapped = [(ch.start or 0) + i for i in idx] if isinstance(ch, slice) else ch[idx].tolist()
                expected |= set(mapped)
        assert set(changed.tolist()) <= expected, site


def test_fused_phi3_slices_hit_only_their_site(device):
    model = tiny_model("phi3", device=device)
    adapter = get_adapter(model)
    ns = make_set(model, [("attn.v", 0, i) for i in range(adapter.sites["attn.v"].width)])
    before = module_outputs(model, [("attn.q", 0)])
    with intervene(model, ns):
        during = module_outputs(model, [("attn.q", 0)])
    qkv_a, qkv_b = before[("attn.q", 0)], during[("attn.q", 0)]
    v = adapter.sites["attn.v"].channels
    assert torch.equal(qkv_b[..., v], torch.zeros_like(qkv_b[..., v]))
    assert torch.equal(qkv_b[..., : v.start], qkv_a[..., : v.start])  # q and k slices untouched
    up = make_set(model, [("mlp.up", 0, i) for i in range(adapter.sites["mlp.up"].width)])
    before = module_outputs(model, [("mlp.up", 0)])[("mlp.up", 0)]
    with intervene(model, up, op="enhance", factor=-1.5):
        during = module_outputs(model, [("mlp.up", 0)])[("mlp.up", 0)]
    gate, upper = adapter.sites["mlp.gate"].channels, adapter.sites["mlp.up"].channels
    assert torch.equal(during[..., gate], before[..., gate])
    assert torch.equal(during[..., upper], before[..., upper] * -1.5)


def test_model_is_bit_identical_after_exit_and_after_an_exception(llama):
    ns = make_set(llama, [("mlp.gate", 1, i) for i in range(40)] + [("attn.v", 0, 3)])
    reference, hooks = logits(llama), hooks_count(llama)
    with intervene(llama, ns):
        assert hooks_count(llama) == hooks + 2
        changed = logits(llama)
    assert not torch.equal(changed, reference)
    assert torch.equal(logits(llama), reference) and hooks_count(llama) == hooks
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(llama, ns, op="enhance"):
            raise RuntimeError("boom")
    assert hooks_count(llama) == hooks
    assert torch.equal(logits(llama), reference)


def test_suppressing_a_whole_site_changes_predictions_and_an_empty_set_nothing(llama):
    adapter = get_adapter(llama)
    width = adapter.sites["mlp.gate"].width
    everything = make_set(llama, [("mlp.gate", layer, i) for layer in range(adapter.num_layers) for i in range(width)])
    empty = make_set(llama, [])
    reference = logits(llama)
    with intervene(llama, empty) as info:
        assert info.modules == []
        assert torch.equal(logits(llama), reference)
    with intervene(llama, everything):
        changed = logits(llama)
    assert (changed.argmax(-1) != reference.argmax(-1)).any()


def test_sets_compose_nested_or_combined(llama):
    a = make_set(llama, [("mlp.gate", 0, i) for i in range(0, 30, 2)], "a")
    b = make_set(llama, [("mlp.gate", 0, i) for i in range(1, 30, 3)] + [("attn.q", 1, 4)], "b")
    with intervene(llama, a | b):
        union = logits(llama)
    with intervene(llama, a), intervene(llama, b):
        nested = logits(llama)
    with intervene(llama, [a, b]):
        combined = logits(llama)
    assert torch.equal(union, nested) and torch.equal(union, combined)
    with intervene(llama, a, op="enhance", factor=3.0), intervene(llama, b):
        mixed = logits(llama)
    assert not torch.equal(mixed, union)


def test_generation_with_a_cache_is_hooked_at_every_step(llama):
    ns = make_set(llama, [("mlp.gate", layer, i) for layer in range(2) for i in range(96)])
    seen = []
    module = get_adapter(llama).sites["mlp.gate"].modules[1]
    with intervene(llama, ns), forward_hooks([(module, lambda _m, _i, out: seen.append(out.abs().max().item()))]):
        ids = IDS[:1].to(llama.device)
        llama.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert len(seen) == 3 and max(seen) == 0.0


def test_sets_that_do_not_fit_the_model(llama):
    adapter = get_adapter(llama)
    with pytest.raises(InputError, match="out-of-range indices: mlp.gate layer 0 index 500"):
        with intervene(llama, NeuronSet.from_columns(["mlp.gate"], [0], [500])):
            pass
    with pytest.raises(InputError, match="out-of-range indices: attn.q layer 7"):
        with intervene(llama, NeuronSet.from_columns(["attn.q"], [7], [0])):
            pass
    other = NeuronSet.from_columns(
        ["mlp.gate"], [0], [1], kind="general", num_layers=32, widths={**adapter.widths, "mlp.gate": 14336}
    )
    with pytest.raises(InputError, match="'general' comes from a different model: .*32 layers"):
        with intervene(llama, other):
            pass
    wider = NeuronSet.from_columns(["mlp.gate"], [0], [1], num_layers=2, widths={**adapter.widths, "mlp.gate": 14336})
    with pytest.raises(InputError, match="site widths differ \\(mlp.gate 14336 vs 96"):
        with intervene(llama, wider):
            pass
    with pytest.raises(InputError, match="uses site\\(s\\) mlp.gate, which this gpt2 model lacks"):
        with intervene(tiny_model("gpt2", device=llama.device.type), NeuronSet.from_columns(["mlp.gate"], [0], [1])):
            pass
    with pytest.raises(InputError, match="unknown intervention op 'zero'"):
        with intervene(llama, NeuronSet.from_columns(["mlp.gate"], [0], [1]), op="zero"):
            pass
    assert hooks_count(llama) == 0
