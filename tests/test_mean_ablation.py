"""Mean ablation: channel means against a one-example-at-a-time loop, and the hook sets exactly the mean."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.errors import InputError
from culture_neurons.intervention import channel_means, intervene, load_means, means_path, save_means
from culture_neurons.models.adapters import get_adapter
from culture_neurons.models.hooks import forward_hooks
from culture_neurons.models.prompting import render_prompt
from culture_neurons.selection import NeuronSet
from tests.tiny import make_examples, tiny_model


def make_set(model, rows, kind="custom"):
    adapter = get_adapter(model)
    sites, layers, indices = zip(*rows)
    return NeuronSet.from_columns(
        list(sites), list(layers), list(indices), kind=kind, num_layers=adapter.num_layers, widths=adapter.widths
    )


def slow_means(model, tokenizer, examples, site):
    """Oracle: one unpadded example at a time, every position, summed channel by channel in Python floats."""
    adapter = get_adapter(model)
    width, layers = adapter.sites[site].width, adapter.num_layers
    sums = [[0.0] * width for _ in range(layers)]
    count = 0
    for ex in examples:
        ids = tokenizer(render_prompt(tokenizer, ex.prompt), add_special_tokens=False)["input_ids"]
        seen: dict[int, torch.Tensor] = {}
        hooks = [
            (
                adapter.sites[site].modules[layer],
                lambda _m, _i, out, layer=layer, seen=seen: seen.__setitem__(layer, out),
            )
            for layer in range(layers)
        ]
        with torch.no_grad(), forward_hooks(hooks):
            model(input_ids=torch.tensor([ids], device=model.device))
        for layer in range(layers):
            acts = adapter.sites[site].take(seen[layer])[0].double().cpu()
            for pos in range(acts.shape[0]):
                for c in range(width):
                    sums[layer][c] += float(acts[pos, c])
        count += len(ids)
    return torch.tensor([[s / count for s in row] for row in sums], dtype=torch.float64)


@pytest.mark.parametrize("family", ["llama", "phi3", "gpt_neox"])
def test_channel_means_equal_a_per_example_loop(family, tokenizer, device):
    model = tiny_model(family, device=device)
    examples = make_examples(7)  # varied lengths: batches need padding
    site = "attn.v"  # a fused slice in phi3 (qkv_proj) and interleaved heads in gpt_neox
    means = channel_means(model, tokenizer, examples, batch_size=3)
    assert set(means) == set(get_adapter(model).sites)
    ref = slow_means(model, tokenizer, examples, site)
    assert means[site].shape == ref.shape
    torch.testing.assert_close(means[site].double(), ref, rtol=1e-5, atol=1e-6)
    # batching does not change the means (right padding: real positions never see pads)
    one = channel_means(model, tokenizer, examples, batch_size=1, sites=[site])
    torch.testing.assert_close(one[site], means[site], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_mean_ablation_sets_exactly_the_mean_and_nothing_else(family, tokenizer, device):
    model = tiny_model(family, device=device)
    adapter = get_adapter(model)
    examples = make_examples(5)
    mlp = "mlp.gate" if "mlp.gate" in adapter.sites else "mlp.in"
    rows = [(mlp, 0, 3), (mlp, 0, 17), (mlp, 1, 0), ("attn.k", 0, 2), ("attn.v", 1, adapter.sites["attn.v"].width - 1)]
    ns = make_set(model, rows)
    means = channel_means(model, tokenizer, examples, ns)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]], device=model.device)
    seen = {}
    hooks = []
    for site in (mlp, "attn.k", "attn.v"):
        for layer in range(adapter.num_layers):
            hooks.append(
                (
                    adapter.sites[site].modules[layer],
                    lambda _m, _i, out, key=(site, layer): seen.__setitem__(
                        key, adapter.sites[key[0]].take(out).detach().clone()
                    ),
                )
            )
    with torch.no_grad(), intervene(model, ns, op="mean", means=means), forward_hooks(hooks):
        model(input_ids=ids)
    for site, layer, index in rows:
        got = seen[(site, layer)][..., index]
        expected = means[site][layer, index].item()
        assert torch.all(got == torch.tensor(expected, dtype=got.dtype)), (site, layer, index)
    # a channel not in the set keeps its ordinary, position-dependent value
    other = seen[(mlp, 0)][0, :, 4]
    assert other.unique().numel() > 1


def test_mean_op_needs_covering_means(llama, tokenizer):
    ns = make_set(llama, [("mlp.gate", 0, 1)])
    with pytest.raises(InputError, match="op 'mean' needs the channel means"):
        with intervene(llama, ns, op="mean"):
            pass
    partial = channel_means(llama, tokenizer, make_examples(2), sites=["attn.q"])
    assert set(partial) == {"attn.q"}
    with pytest.raises(InputError, match="no entry for site 'mlp.gate'"):
        with intervene(llama, ns, op="mean", means=partial):
            pass
    with pytest.raises(InputError, match="does not cover this set"):
        with intervene(llama, ns, op="mean", means={"mlp.gate": torch.zeros(2, 1)}):
            pass
    with pytest.raises(InputError, match="at least one reference example"):
        channel_means(llama, tokenizer, [])


def test_means_file_round_trip_and_bad_files(llama, tokenizer, tmp_path):
    assert means_path(tmp_path / "general.json") == tmp_path / "general.means.safetensors"
    means = channel_means(llama, tokenizer, make_examples(3), sites=["mlp.gate", "attn.v"])
    path = save_means(means, means_path(tmp_path / "general.json"), model=llama, examples=make_examples(3))
    back = load_means(path)
    assert set(back) == set(means) and all(torch.equal(back[k], means[k].float()) for k in means)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(InputError, match="does not exist"):
        load_means(tmp_path / "missing.means.safetensors")
    (tmp_path / "bad.means.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="bad.means.safetensors is not a readable safetensors file"):
        load_means(tmp_path / "bad.means.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2, 2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(InputError, match="not culture-neurons channel means"):
        load_means(tmp_path / "foreign.safetensors")


def test_means_of_another_model_are_flagged(llama, tokenizer, tmp_path):
    from culture_neurons.intervention.means import check_means_model

    path = save_means(
        channel_means(llama, tokenizer, make_examples(2), sites=["mlp.gate"]),
        tmp_path / "m.means.safetensors",
        model=llama,
    )
    assert check_means_model(path, llama) is None
    other = tiny_model("llama", device=llama.device.type)
    other.config.rms_norm_eps = 1e-3  # same shapes, another model
    assert "config differs" in check_means_model(path, other)
