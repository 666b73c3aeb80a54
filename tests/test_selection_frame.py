"""NeuronSet.to_frame / to_parquet: columns, fused projections resolved by hand, and the channel a
plain PyTorch hook zeroes equals what the project's intervention zeroes."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.errors import InputError
from culture_neurons.intervention import intervene
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection import NeuronSet
from culture_neurons.selection.frame import COLUMNS
from tests.tiny import FAMILIES, tiny_model


def _sample_set(adapter, per_site=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    sites, layers, indices = [], [], []
    for site, width in adapter.widths.items():
        for layer in range(adapter.num_layers):
            for i in torch.randperm(width, generator=g)[:per_site].tolist():
                sites.append(site)
                layers.append(layer)
                indices.append(i)
    return NeuronSet.from_columns(
        sites, layers, indices, [0.5] * len(sites), num_layers=adapter.num_layers, widths=adapter.widths
    )


def _expected_channel(family, model, site, index):
    """The fused-output channel worked out from the config alone (not from the adapter)."""
    c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    if family == "phi3":
        q = c.num_attention_heads * head_dim
        kv = c.num_key_value_heads * head_dim
        return {
            "attn.q": index,
            "attn.k": q + index,
            "attn.v": q + kv + index,
            "mlp.gate": index,
            "mlp.up": c.intermediate_size + index,
        }[site]
    if family == "gpt2":
        return {"attn.q": 0, "attn.k": c.hidden_size, "attn.v": 2 * c.hidden_size, "mlp.in": 0}[site] + index
    if family == "gpt_neox":
        if site == "mlp.in":
            return index
        part = {"attn.q": 0, "attn.k": 1, "attn.v": 2}[site]
        head, within = divmod(index, head_dim)
        return head * 3 * head_dim + part * head_dim + within
    return index


@pytest.mark.parametrize("family", FAMILIES)
def test_frame_columns_and_fused_channels(family):
    model = tiny_model(family)
    adapter = get_adapter(model)
    ns = _sample_set(adapter)
    frame = ns.to_frame(model)
    assert tuple(frame.columns) == COLUMNS and len(frame) == len(ns)
    for row in frame.itertuples(index=False):
        module = model.get_submodule(row.hf_module)
        out_features = getattr(module, "out_features", None) or module.weight.shape[-1]
        assert 0 <= row.channel < out_features
        assert f".{row.layer}." in row.hf_module
        assert row.channel == _expected_channel(family, model, row.site, row.index), row
    hooks = set(frame["tl_hook"])
    assert all(h is None or h.startswith("blocks.") for h in hooks)
    if family in ("llama", "gpt2", "gpt_neox", "phi3"):
        row = frame.iloc[0]
        kind = {"mlp.gate": "mlp.hook_pre", "mlp.in": "mlp.hook_pre", "attn.q": "attn.hook_q"}[row.site]
        assert row.tl_hook == f"blocks.{row.layer}.{kind}"
    # The adapter alone gives the same module and channel columns.
    by_adapter = ns.to_frame(adapter)
    assert by_adapter[["hf_module", "channel"]].equals(frame[["hf_module", "channel"]])


@pytest.mark.parametrize("family", ["llama", "phi3", "gpt2", "gpt_neox"])
def test_frame_channel_is_the_channel_the_intervention_zeroes(family):
    model = tiny_model(family)
    adapter = get_adapter(model)
    ns = _sample_set(adapter, per_site=1, seed=3)
    frame = ns.to_frame(model)
    ids = torch.tensor([[1, 5, 9, 17, 30, 2]], device=next(model.parameters()).device)
    with intervene(model, ns), torch.no_grad():
        want = model(input_ids=ids).logits
    handles = []
    for module_path, rows in frame.groupby("hf_module"):
        channels = torch.tensor(sorted(rows["channel"].astype(int).tolist()))

        def zero(_m, _i, out, channels=channels):
            out = out.clone()
            out[..., channels] = 0
            return out

        handles.append(model.get_submodule(module_path).register_forward_hook(zero))
    try:
        with torch.no_grad():
            got = model(input_ids=ids).logits
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        plain = model(input_ids=ids).logits
    assert not torch.allclose(plain, want)  # the set does change the output
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_frame_without_model_and_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    ns = NeuronSet.from_columns(["mlp.gate", "attn.q"], [0, 1], [3, 4], [0.25, None])
    frame = ns.to_frame()
    assert frame["hf_module"].isna().all() and frame["tl_hook"].isna().all() and frame["channel"].isna().all()
    assert frame["score"].iloc[0] == 0.25 and pd.isna(frame["score"].iloc[1])
    model = tiny_model("llama")
    path = ns.to_parquet(tmp_path / "set.parquet", model)
    back = pd.read_parquet(path)
    assert back["hf_module"].tolist() == ["model.layers.0.mlp.gate_proj", "model.layers.1.self_attn.q_proj"]
    assert back["channel"].tolist() == [3, 4]
    assert back["tl_hook"].tolist() == ["blocks.0.mlp.hook_pre", "blocks.1.attn.hook_q"]


def test_frame_rejects_a_set_of_another_model():
    model = tiny_model("gpt2")
    ns = NeuronSet.from_columns(["mlp.gate"], [0], [1])
    with pytest.raises(InputError, match="lacks"):
        ns.to_frame(model)
    with pytest.raises(InputError, match="needs a model or its ModelAdapter"):
        ns.to_frame("gpt2")
