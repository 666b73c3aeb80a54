"""Adapters: every family resolves all its sites with the right widths, fused splits are exact."""

from __future__ import annotations

import json

import pytest
import torch

from culture_neurons.errors import ArchitectureError
from culture_neurons.models.adapters import get_adapter
from tests.tiny import FAMILIES, tiny_config, tiny_model

H, FFN, Q, KV = 64, 96, 64, 32  # tiny_config sizes: hidden, intermediate, q = 4 heads x 16, kv = 2 heads x 16

EXPECTED = {
    "llama": {"mlp.gate": FFN, "mlp.up": FFN, "attn.q": Q, "attn.k": KV, "attn.v": KV},
    "gpt2": {"mlp.in": 4 * H, "attn.q": H, "attn.k": H, "attn.v": H},
    "gpt_neox": {"mlp.in": FFN, "attn.q": H, "attn.k": H, "attn.v": H},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_all_sites(family):
    model = tiny_model(family)
    adapter = get_adapter(model)
    assert adapter.num_layers == 2
    assert adapter.widths == EXPECTED.get(family, EXPECTED["llama"])
    # Run a forward pass and check each site's selected channels have the declared width.
    seen = {}
    hooks = []
    for point in adapter.hook_points():

        def hook(_m, _i, out, point=point):
            for site in point.sites:
                seen[(site.name, point.layer)] = site.take(out).shape[-1]

        hooks.append(point.module.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 5, 6, 7]]))
    for h in hooks:
        h.remove()
    assert seen == {(s, layer): w for s, w in adapter.widths.items() for layer in range(2)}


def test_gemma3_multimodal_layers_live_under_language_model():
    adapter = get_adapter(tiny_model("gemma3"))
    assert adapter.family == "gemma3"
    assert adapter.layers_path == "model.language_model.layers"


def _capture_qkv(monkeypatch, module, model, ids):
    """Record the q/k (before rotary) and v tensors that the model's own attention code uses."""
    captured = {"q": [], "k": [], "v": []}
    if hasattr(module, "apply_rotary_pos_emb"):
        original_rope = module.apply_rotary_pos_emb

        def rope(q, k, *args, **kwargs):
            captured["q"].append(q.detach().clone())
            captured["k"].append(k.detach().clone())
            return original_rope(q, k, *args, **kwargs)

        monkeypatch.setattr(module, "apply_rotary_pos_emb", rope)
    original_attn = module.eager_attention_forward

    def attn(mod, query, key, value, *args, **kwargs):
        if not hasattr(module, "apply_rotary_pos_emb"):
            captured["q"].append(query.detach().clone())
            captured["k"].append(key.detach().clone())
        captured["v"].append(value.detach().clone())
        return original_attn(mod, query, key, value, *args, **kwargs)

    monkeypatch.setattr(module, "eager_attention_forward", attn)
    with torch.no_grad():
        model(input_ids=ids)
    return captured


@pytest.mark.parametrize("family", ["gpt_neox", "phi3", "gpt2"])
def test_fused_slices_match_what_attention_uses(family, monkeypatch):
    """The q/k/v channels we cut from a fused projection are exactly the model's own q/k/v."""
    import importlib

    module = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    model = tiny_model(family, attn="eager")
    adapter = get_adapter(model)
    ids = torch.tensor([[1, 9, 4, 7, 3]])
    outputs = {}
    hooks = [
        p.module.register_forward_hook(lambda _m, _i, out, p=p: outputs.__setitem__(p.layer, out.detach().clone()))
        for p in adapter.hook_points(["attn.q"])
    ]
    captured = _capture_qkv(monkeypatch, module, model, ids)
    for h in hooks:
        h.remove()
    head_dim = 16
    for layer in range(2):
        for key, site in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v")):
            ours = adapter.sites[site].take(outputs[layer])  # [1, T, heads*hd]
            theirs = captured[key][layer]  # [1, heads, T, hd]
            theirs = (
                theirs.transpose(1, 2).reshape(1, ids.shape[1], -1)[..., : ours.shape[-1]]
                if theirs.shape[-1] == head_dim
                else theirs
            )
            assert torch.equal(ours, theirs), (family, site, layer)


def test_unknown_architecture_names_what_was_found():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wq = torch.nn.Linear(8, 8)
            self.w1 = torch.nn.Linear(8, 16)

    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block(), Block()])

    with pytest.raises(ArchitectureError) as err:
        get_adapter(Weird())
    msg = str(err.value)
    assert "Weird" in msg and "'blocks'" in msg and "wq" in msg and "--site-map" in msg


def test_site_map_file_for_unknown_model(tmp_path):
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wqkv = torch.nn.Linear(8, 24)
            self.w1 = torch.nn.Linear(8, 16)

    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block(), Block(), Block()])

    path = tmp_path / "sites.toml"
    path.write_text(
        'layers = "blocks"\n[sites."mlp.in"]\nmodule = "w1"\n'
        '[sites."attn.k"]\nmodule = "wqkv"\nsplit = { layout = "blocks", sizes = [8, 8, 8], part = 1 }\n'
    )
    adapter = get_adapter(Weird(), site_map=path)
    assert adapter.num_layers == 3 and adapter.widths == {"mlp.in": 16, "attn.k": 8}
    assert adapter.sites["attn.k"].channels == slice(8, 16)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": "blocks", "sites": {"attn.z": {"module": "w1"}}}))
    with pytest.raises(ArchitectureError, match="sites.attn.z is not a site"):
        get_adapter(Weird(), site_map=bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps(
            {
                "layers": "blocks",
                "sites": {"attn.q": {"module": "wqkv", "split": {"layout": "blocks", "sizes": [8, 8], "part": 0}}},
            }
        )
    )
    with pytest.raises(ArchitectureError, match="add up to 16"):
        get_adapter(Weird(), site_map=wrong)


def test_detection_by_module_tree_when_model_type_is_unknown():
    model = tiny_model("llama")
    model.config.model_type = "my-llama-finetune"
    assert get_adapter(model).family == "llama"


def test_configs_are_tiny():
    assert tiny_config("llama").num_hidden_layers == 2


def test_gemma3_text_models_are_family_gemma3():
    """Gemma3ForCausalLM (model_type gemma3_text, e.g. Gemma-3-270M) is Gemma 3, not Llama."""
    model = tiny_model("gemma3_text")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    adapter = get_adapter(model)
    assert adapter.family == "gemma3" and adapter.layers_path == "model.layers"
    assert adapter.widths == EXPECTED["llama"]
