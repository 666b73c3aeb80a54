"""Exports for other tools: ScoreTable frames, TransformerLens indices, nnsight paths.

The oracles are the tensors themselves."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from culture_neurons.attribution.scoretable import ScoreTable
from culture_neurons.errors import InputError, TableError
from culture_neurons.integrations.frames import attribute_path, resolve_path, score_frame, tl_index
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection.neuronset import NeuronSet
from tests.tiny import tiny_model


def small_table(model) -> ScoreTable:
    adapter = get_adapter(model)
    gen = torch.Generator().manual_seed(0)
    scores = {s: torch.randn(adapter.num_layers, w, 3, generator=gen) for s, w in adapter.widths.items()}
    return ScoreTable(
        scores,
        torch.tensor([2, 3, 5]),
        torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64),
        ["Japan", "Mexico", "Spain"],
    )


def test_scoretable_to_frame_matches_the_tensors():
    table = small_table(tiny_model("llama"))
    frame = table.to_frame("mlp.gate", groups=True)
    layers, width = table.scores["mlp.gate"].shape[:2]
    assert list(frame.columns) == ["site", "layer", "index", "score", "score:Japan", "score:Mexico", "score:Spain"]
    assert len(frame) == layers * width
    for row in frame.sample(20, random_state=0).itertuples(index=False):
        total = float(table.scores["mlp.gate"][row.layer, row.index].sum()) / 10
        assert row.score == pytest.approx(total, rel=1e-6)
        assert row._5 == pytest.approx(float(table.scores["mlp.gate"][row.layer, row.index, 1]) / 10, rel=1e-6)
    with pytest.raises(TableError, match="site 'mlp.in' not in this table"):
        table.to_frame("mlp.in")


@pytest.mark.parametrize("family", ["llama", "phi3", "gpt2"])
def test_score_frame_model_columns_match_neuronset_frame(family):
    model = tiny_model(family)
    table = small_table(model)
    site = "attn.v"
    top = score_frame(table, site, model=model, top=7)
    assert len(top) == 7 and top["score"].is_monotonic_decreasing
    flat = table.dataset_score(site).reshape(-1)
    best = torch.topk(flat, 7).indices
    width = table.widths[site]
    assert list(zip(top["layer"], top["index"])) == [(int(i) // width, int(i) % width) for i in best]
    ns = NeuronSet.from_columns([site] * 7, top["layer"].tolist(), top["index"].tolist())
    theirs = ns.to_frame(model)
    assert top["hf_module"].tolist() == theirs["hf_module"].tolist()
    assert top["channel"].tolist() == theirs["channel"].tolist()
    assert top["tl_hook"].tolist() == theirs["tl_hook"].tolist()


def test_channel_column_reads_the_neuron_out_of_the_module_output():
    """Oracle: the fused projection's output at ``channel`` is the site's output at ``index``."""
    model = tiny_model("phi3")
    adapter = get_adapter(model)
    frame = score_frame(small_table(model), "attn.k", model=model, top=5)
    captured = {}
    for row in frame.itertuples(index=False):
        module = resolve_path(model, row.hf_module)
        handle = module.register_forward_hook(
            lambda _m, _i, out, key=row.hf_module: captured.__setitem__(key, out.detach())
        )
        with torch.no_grad():
            model(input_ids=torch.tensor([[1, 5, 6, 7]]))
        handle.remove()
        site_out = adapter.sites["attn.k"].take(captured[row.hf_module])
        assert torch.equal(captured[row.hf_module][..., row.channel], site_out[..., row.index])


def test_tl_index_splits_attention_channels_into_head_and_dim():
    q = torch.randn(1, 4, 4 * 16)  # [batch, pos, heads * d_head], as the HF projection returns it
    per_head = q.view(1, 4, 4, 16)  # TransformerLens' hook_q layout
    for index in (0, 15, 16, 37, 63):
        head, d = tl_index("blocks.0.attn.hook_q", index, d_head=16)
        assert torch.equal(per_head[..., head, d], q[..., index])
    assert tl_index("blocks.1.mlp.hook_pre", 9) == (9,)
    with pytest.raises(InputError, match="pass d_head"):
        tl_index("blocks.0.attn.hook_k", 3)
    with pytest.raises(InputError, match="no TransformerLens hook"):
        tl_index(None, 3)


def test_nnsight_paths_name_the_same_module():
    model = tiny_model("llama")
    path = "model.layers.1.mlp.gate_proj"
    assert attribute_path(path) == "model.layers[1].mlp.gate_proj"
    assert resolve_path(model, path) is model.get_submodule(path)
    assert eval("m." + attribute_path(path), {"m": model}) is model.get_submodule(path)  # the form users type
    with pytest.raises(InputError, match="stopped at '7'"):
        resolve_path(model, "model.layers.7.mlp")


@pytest.mark.skipif(importlib.util.find_spec("nnsight") is None, reason="nnsight not installed")
def test_nnsight_envoy_resolves():  # pragma: no cover - only where nnsight is installed
    from nnsight import NNsight

    model = tiny_model("llama")
    wrapped = NNsight(model)
    assert resolve_path(wrapped, "model.layers.0.mlp.gate_proj") is not None


@pytest.mark.skipif(importlib.util.find_spec("transformer_lens") is None, reason="transformer_lens not installed")
def test_transformer_lens_hook_names_exist():  # pragma: no cover - only where TransformerLens is installed
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=64,
        n_ctx=16,
        d_head=16,
        n_heads=4,
        d_mlp=96,
        d_vocab=50,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMS",
    )
    hooked = HookedTransformer(cfg)
    frame = NeuronSet.from_columns(["mlp.gate", "mlp.up", "attn.q"], [0, 1, 1], [3, 4, 5]).to_frame(tiny_model("llama"))
    for hook in frame["tl_hook"]:
        assert hook in hooked.hook_dict
