"""Neuron cards: each number against a slow, obviously correct version on tiny models.

- the logit lens against the explicit product for one neuron at a time (Llama's ``weight``, Gemma's
  ``1 + weight`` and sandwich norms, GPT-2's LayerNorm and Conv1D), and against the model's own modules;
- the activations, top examples and heat lines against running each example alone through a hook
  (packed choice rows, one row per option, plain rows, fused and per-head projections);
- per-country means, ratios, density and the histogram against plain averages and counts;
- the pipeline's ``neurons/cards.jsonl``, ``culture-neurons inspect`` and its one-line errors.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from culture_neurons.attribution.batching import target_rows
from culture_neurons.cards import (
    CardOptions,
    CardSet,
    CountryStat,
    NeuronCard,
    NeuronRef,
    SourceStat,
    TokenLogit,
    capture,
    cards_from_run,
    logit_lens,
    neuron_cards,
    read_cards,
    summary_line,
)
from culture_neurons.cards import activations as activations_module
from culture_neurons.cards.render import text_card
from culture_neurons.cli import cli
from culture_neurons.data import Example
from culture_neurons.errors import ArchitectureError, ConfigError, InputError
from culture_neurons.models import adapter_tables
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection.neuronset import NeuronSet
from tests.pipeline_helpers import shared_run, tiny_run_config
from tests.tiny import make_examples, tiny_model

# Where each family writes (the test's own statement of the models' code, not the adapter tables):
# (MLP output, attention output, final norm, norm after the MLP, norm after the attention)
PATHS = {
    "llama": ("model.layers.{}.mlp.down_proj", "model.layers.{}.self_attn.o_proj", "model.norm", None, None),
    "qwen3": ("model.layers.{}.mlp.down_proj", "model.layers.{}.self_attn.o_proj", "model.norm", None, None),
    "phi3": ("model.layers.{}.mlp.down_proj", "model.layers.{}.self_attn.o_proj", "model.norm", None, None),
    "gemma2": (
        "model.layers.{}.mlp.down_proj",
        "model.layers.{}.self_attn.o_proj",
        "model.norm",
        "model.layers.{}.post_feedforward_layernorm",
        "model.layers.{}.post_attention_layernorm",
    ),
    "gemma3_text": (
        "model.layers.{}.mlp.down_proj",
        "model.layers.{}.self_attn.o_proj",
        "model.norm",
        "model.layers.{}.post_feedforward_layernorm",
        "model.layers.{}.post_attention_layernorm",
    ),
    "gpt2": ("transformer.h.{}.mlp.c_proj", "transformer.h.{}.attn.c_proj", "transformer.ln_f", None, None),
    "gpt_neox": (
        "gpt_neox.layers.{}.mlp.dense_4h_to_h",
        "gpt_neox.layers.{}.attention.dense",
        "gpt_neox.final_layer_norm",
        None,
        None,
    ),
}
HEADS, HEAD_DIM = 4, 16  # tiny_config: 4 query heads of 16 dimensions (2 key-value heads where GQA)


def _random_norms(model, seed: int = 1):
    """Norm weights (and LayerNorm biases) far from their initial ones, so ``weight`` and ``1 + weight`` differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.endswith(("Norm", "LayerNorm")):
                for p in module.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.2)
    return model


def _vocab(model, tokenizer) -> int:
    return min(model.get_output_embeddings().weight.shape[0], len(tokenizer))


# ---------------------------------------------------------------------------------------------
# the logit lens


def _explicit_llama(model, layer, index):
    w = model.model.layers[layer].mlp.down_proj.weight[:, index]
    return model.lm_head.weight @ (model.model.norm.weight * w)


def _explicit_gemma(model, layer, index):
    block = model.model.layers[layer]
    w = (1 + block.post_feedforward_layernorm.weight) * block.mlp.down_proj.weight[:, index]
    return model.lm_head.weight @ ((1 + model.model.norm.weight) * w)


def _explicit_gpt2(model, layer, index):
    w = model.transformer.h[layer].mlp.c_proj.weight[index, :]  # Conv1D: [in, out], row = input channel
    return model.lm_head.weight @ (model.transformer.ln_f.weight * (w - w.mean()))


@pytest.mark.parametrize(
    ("family", "explicit"), [("llama", _explicit_llama), ("gemma3_text", _explicit_gemma), ("gpt2", _explicit_gpt2)]
)
def test_promoted_tokens_equal_the_explicit_product(family, explicit, tokenizer):
    model = _random_norms(tiny_model(family))
    site = "mlp.in" if family == "gpt2" else "mlp.gate"
    refs = [NeuronRef(site, layer, index) for layer in (0, 1) for index in (0, 5, 17)]
    lenses = logit_lens(model, tokenizer, refs, k=6)
    vocab = _vocab(model, tokenizer)
    for ref, lens in zip(refs, lenses):
        with torch.no_grad():
            logits = explicit(model, ref.layer, ref.index)[:vocab].double()
        top = logits.topk(6)
        bottom = (-logits).topk(6)
        assert [t.id for t in lens.promoted] == top.indices.tolist(), ref
        assert [t.id for t in lens.suppressed] == bottom.indices.tolist(), ref
        assert [t.logit for t in lens.promoted] == pytest.approx(top.values.tolist(), rel=1e-4, abs=1e-5)
        assert [t.logit for t in lens.suppressed] == pytest.approx((-bottom.values).tolist(), rel=1e-4, abs=1e-5)
        assert [t.token for t in lens.promoted] == [tokenizer.decode([i]) for i in top.indices.tolist()]
    if family == "gemma3_text":  # the same weights read as Llama's would give another list: the offset matters
        wrong = model.lm_head.weight @ (model.model.norm.weight * model.model.layers[0].mlp.down_proj.weight[:, 0])
        assert wrong[:vocab].topk(6).indices.tolist() != [t.id for t in lenses[0].promoted]


def _module_oracle(model, family, ref, tokenizer):
    """The logits the model's own modules give a unit write of the channel: the output projection applied to a
    one-hot input (value channels: one for every query head reading the value head), then the norms and the
    unembedding, minus the same path applied to zero (biases)."""
    mlp, attn, final, post_mlp, post_attn = PATHS[family]
    is_mlp = ref.site.startswith("mlp.")
    proj = model.get_submodule((mlp if is_mlp else attn).format(ref.layer))
    width = proj.weight.shape[1] if isinstance(proj, torch.nn.Linear) else proj.weight.shape[0]
    x = torch.zeros(1, width, device=proj.weight.device)
    if is_mlp:
        x[0, ref.index] = 1.0
    else:
        kv_heads = get_adapter(model).sites["attn.v"].width // HEAD_DIM
        head, dim = divmod(ref.index, HEAD_DIM)
        for q in range(HEADS):
            if q // (HEADS // kv_heads) == head:  # repeat_kv: query head q reads value head q // n_rep
                x[0, q * HEAD_DIM + dim] = 1.0
    post = post_mlp if is_mlp else post_attn

    def path(v):
        out = proj(v)
        if post is not None:
            out = model.get_submodule(post.format(ref.layer))(out)
        return model.get_output_embeddings()(model.get_submodule(final)(out))

    with torch.no_grad():
        return (path(x) - path(torch.zeros_like(x)))[0, : _vocab(model, tokenizer)].double().cpu()


@pytest.mark.parametrize("family", sorted(PATHS))
def test_lens_ranks_tokens_as_the_models_own_modules_do(family, tokenizer):
    model = _random_norms(tiny_model(family), seed=3)
    adapter = get_adapter(model)
    mlp_site = "mlp.in" if "mlp.in" in adapter.sites else "mlp.gate"
    refs = [NeuronRef(mlp_site, 1, 7), NeuronRef("attn.v", 0, 3), NeuronRef("attn.v", 1, 21)]
    if "mlp.up" in adapter.sites:
        refs.append(NeuronRef("mlp.up", 0, 2))
    for ref, lens in zip(refs, logit_lens(model, tokenizer, refs, k=5)):
        oracle = _module_oracle(model, family, ref, tokenizer)
        ours = torch.tensor([t.logit for t in lens.promoted], dtype=torch.float64)
        assert [t.id for t in lens.promoted] == oracle.topk(5).indices.tolist(), (family, ref)
        assert [t.id for t in lens.suppressed] == (-oracle).topk(5).indices.tolist(), (family, ref)
        scale = ours / oracle[[t.id for t in lens.promoted]]  # the norms' RMS divisions: one positive number
        assert bool((scale > 0).all()) and torch.allclose(scale, scale[0].expand_as(scale), rtol=1e-3), (family, ref)
        if ref.site == "attn.v" and adapter.sites["attn.v"].width < adapter.sites["attn.q"].width:
            assert "summed over query heads" in lens.through


def test_a_norm_rule_that_disagrees_with_the_module_is_an_error(tokenizer, monkeypatch):
    model = _random_norms(tiny_model("gemma3_text"))
    monkeypatch.setitem(
        adapter_tables.NORM_RULES, "Gemma3RMSNorm", adapter_tables.NormRule()
    )  # "weight", not "1 + weight"
    with pytest.raises(ArchitectureError, match="does not apply its weight as declared"):
        logit_lens(model, tokenizer, [NeuronRef("mlp.gate", 0, 1)])


def test_query_and_key_channels_have_no_output_direction(tokenizer):
    model = tiny_model("llama")
    lens = logit_lens(model, tokenizer, [NeuronRef("attn.q", 0, 1), NeuronRef("attn.k", 1, 2)])
    assert all(x.through is None and not x.promoted and "no output direction" in x.note for x in lens)
    with pytest.raises(ArchitectureError, match=r"neuron attn\.q:0:1: attn\.q has no output direction"):
        logit_lens(model, tokenizer, [NeuronRef("attn.q", 0, 1)], strict=True)


# ---------------------------------------------------------------------------------------------
# activations: one batched pass against each example alone


def _choice_examples(n: int = 7, groups=("Japan", "Mexico", "Spain"), tag: str = "c"):
    foods = ["sushi", "tacos rice", "paella", "tea and bread", "rice", "noon"]
    return [
        Example(
            id=f"{tag}{i}",
            prompt=f"Question: which country eats {' '.join(foods[: 1 + i % 5])}?\nAnswer:",
            answer="ABC"[i % 3],
            group=groups[i % len(groups)],
            options=(foods[i % 6], foods[(i + 1) % 6], "Spain" + "!" * (i % 3)),
            labels=("A", "B", "C"),
        )
        for i in range(n)
    ]


def _shared_prefix(tokens):
    """The leading tokens left out: those every example shares, and always the first (no context there)."""
    shortest = min(len(t) for t in tokens)
    n = 0
    while n < shortest - 1 and len({t[n] for t in tokens}) == 1:
        n += 1
    return max(n, 1 if shortest > 1 else 0)


def _alone(model, tokenizer, examples, ref, target, chat_template):
    """Each example run alone, each of its rows alone, one plain hook: the activation at every scored position."""
    site = get_adapter(model).sites[ref.site]
    rows = target_rows(tokenizer, examples, target, chat_template)
    device = next(model.parameters()).device
    out = []
    for example_rows in rows:
        values: list[float] = []
        for j, row in enumerate(example_rows):
            seen = {}

            def hook(_m, _i, output, seen=seen):
                seen["v"] = site.take(output[0] if isinstance(output, tuple) else output)[0, :, ref.index]

            handle = site.modules[ref.layer].register_forward_hook(hook)
            try:
                with torch.no_grad():
                    model(input_ids=torch.tensor([row.input_ids], device=device))
            finally:
                handle.remove()
            per_token = seen["v"].float().cpu().tolist()
            values += per_token if j == 0 else per_token[row.prompt_len :]  # the prompt once, then each option
        out.append(values)
    tokens = [
        list(r[0].input_ids[: r[0].prompt_len]) + [t for x in r for t in x.input_ids[x.prompt_len :]] for r in rows
    ]
    return out, tokens


def _check_against_alone(model, tokenizer, examples, refs, target, chat_template, top_k=3):
    got = capture(
        model, tokenizer, examples, refs, target=target, chat_template=chat_template, batch_size=3, top_k=top_k
    )
    for j, ref in enumerate(refs):
        values, tokens = _alone(model, tokenizer, examples, ref, target, chat_template)
        skip = _shared_prefix(tokens)
        assert [tuple(t) for t in tokens] == got.tokens
        counted = [v[skip:] for v in values]
        maxima = [max(v) for v in counted]
        assert got.example_max[:, j].tolist() == pytest.approx(maxima, abs=2e-5), ref
        # an option's first token after the same prompt reads the same in every option: ties up to rounding, so
        # a position (and an example of the top k) is checked by its value
        at = [values[e][p] for e, p in enumerate(got.example_argmax[:, j].tolist())]
        assert all(p >= skip for p in got.example_argmax[:, j].tolist()) and at == pytest.approx(maxima, abs=2e-5)
        assert int(got.active[j]) == sum(x > 0 for v in counted for x in v), ref
        assert got.positions == sum(len(v) for v in counted)
        best = got.top_index[:, j].tolist()
        assert [maxima[e] for e in best] == pytest.approx(sorted(maxima, reverse=True)[:top_k], abs=2e-5), ref
        assert len(set(best)) == top_k
        for r, e in enumerate(best):
            heat = got.top_heat[r, j, : len(values[e])]
            assert heat[:skip].isnan().all() and heat[skip:].tolist() == pytest.approx(values[e][skip:], abs=2e-5)
    return got


def test_choice_activations_equal_each_example_alone_packed_and_unpacked(tokenizer, monkeypatch):
    model = tiny_model("llama", attn="eager")
    examples = _choice_examples(7)
    refs = [NeuronRef("mlp.gate", 0, 3), NeuronRef("attn.v", 1, 5), NeuronRef("attn.q", 1, 40)]
    packed = _check_against_alone(model, tokenizer, examples, refs, "choice", False)
    monkeypatch.setattr(activations_module, "packs", lambda *_: False)  # one row per option
    rows = _check_against_alone(model, tokenizer, examples, refs, "choice", False)
    assert torch.allclose(packed.example_max, rows.example_max, atol=2e-5)


@pytest.mark.parametrize("family", ["phi3", "gpt_neox", "gemma2"])
def test_fused_and_windowed_models_match_each_example_alone(family, tokenizer):
    model = tiny_model(family)
    adapter = get_adapter(model)
    mlp = "mlp.in" if "mlp.in" in adapter.sites else "mlp.up"
    refs = [NeuronRef(mlp, 1, 9), NeuronRef("attn.k", 0, 6), NeuronRef("attn.v", 1, 2)]
    # gemma2's sliding window (16) is shorter than these rows, so its choice rows run one per option
    _check_against_alone(model, tokenizer, _choice_examples(5), refs, "choice", False)
    _check_against_alone(model, tokenizer, make_examples(6), refs, "label", True)


def test_the_pass_leaves_no_hook_and_stops_early(tokenizer, monkeypatch):
    model = tiny_model("llama")
    layers = model.model.layers
    ran = []
    handle = layers[1].register_forward_pre_hook(lambda *_: ran.append(1))
    capture(model, tokenizer, make_examples(4), [NeuronRef("mlp.gate", 0, 1)], batch_size=2)
    handle.remove()
    assert ran == []  # nothing after the deepest chosen layer ran
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------
# cards: per-country means, ratios, density and histogram against plain averages


def test_card_numbers_equal_plain_averages(tokenizer):
    model = tiny_model("llama", attn="eager")
    ident = _choice_examples(9, tag="i")
    control = _choice_examples(6, tag="k")
    nlu = [replace(e, prompt="Pick the best one: " + e.prompt) for e in _choice_examples(4, groups=("nlu",), tag="n")]
    refs = [NeuronRef("mlp.gate", 1, 11), NeuronRef("attn.q", 0, 4)]
    options = CardOptions(top_examples=4, bins=7, batch_size=4)
    examples = {"identification": ident, "control": control, "nlu": nlu}
    cards = neuron_cards(model, tokenizer, refs, examples, options=options, target="choice", chat_template=False)
    everything = ident + control + nlu
    for ref, card in zip(refs, cards):
        values, tokens = _alone(model, tokenizer, everything, ref, "choice", False)
        # each source's own opening is left out (NLU's "Pick the best one: Question: ..." as well as "Question: ...")
        skips = [_shared_prefix(tokens[a:b]) for a, b in ((0, 9), (9, 15), (15, 19))]
        assert skips[2] > skips[0] == skips[1] > 0
        skip_of = [skips[0]] * 9 + [skips[1]] * 6 + [skips[2]] * 4
        act = [max(v[k:]) for v, k in zip(values, skip_of)]
        by_id = dict(zip((e.id for e in everything), act))

        def mean(items, by_id=by_id):
            return sum(by_id[e.id] for e in items) / len(items)

        for c in card.countries:
            assert c.n == sum(e.group == c.country for e in ident)
            assert c.mean == pytest.approx(mean([e for e in ident if e.group == c.country]), abs=2e-5)
            assert c.control_mean == pytest.approx(mean([e for e in control if e.group == c.country]), abs=2e-5)
        assert {c.country for c in card.countries} == {"Japan", "Mexico", "Spain"}
        means = {s.source: s.mean for s in card.sources}
        assert means == pytest.approx({"identification": mean(ident), "control": mean(control), "nlu": mean(nlu)})
        ratio = mean(ident) / mean(control) if mean(ident) > 0 and mean(control) > 0 else None
        assert card.control_ratio == (pytest.approx(ratio) if ratio is not None else None)
        assert card.max_activation == pytest.approx(max(act), abs=2e-5)
        counted = [x for v, k in zip(values, skip_of) for x in v[k:]]
        assert card.density == pytest.approx(sum(x > 0 for x in counted) / len(counted))
        assert sum(card.histogram.counts) == len(everything) and len(card.histogram.counts) == 7
        assert card.histogram.edges[0] == pytest.approx(min(act), abs=2e-5)
        assert card.histogram.edges[-1] == pytest.approx(max(act), abs=2e-5)
        index = {x.id: e for e, x in enumerate(everything)}
        assert [h.activation for h in card.top_examples] == pytest.approx(sorted(act, reverse=True)[:4], abs=2e-5)
        for hit in card.top_examples:
            e = index[hit.id]
            assert hit.activation == pytest.approx(act[e], abs=2e-5) and hit.source in examples
            assert values[e][hit.position] == pytest.approx(act[e], abs=2e-5) and hit.position >= skip_of[e]
            assert all(h is None for h in hit.heat[: skip_of[e]]) and hit.heat[skip_of[e]] is not None
            assert hit.token == tokenizer.decode([tokens[e][hit.position]]) == hit.tokens[hit.position]
            assert len(hit.heat) == len(tokens[e]) and hit.heat[hit.position] == pytest.approx(act[e], rel=1e-3)
            rows = target_rows(tokenizer, [everything[e]], "choice", False)[0]
            starts = [rows[0].prompt_len + sum(len(r.input_ids) - r.prompt_len for r in rows[:j]) for j in range(3)]
            assert hit.breaks == tuple(b for b, r in zip(starts, rows) if len(r.input_ids) > r.prompt_len)
    assert cards[1].through is None and cards[1].summary.startswith("no output direction")
    assert cards[0].summary.startswith("promotes ")


def test_summary_line_is_computed_from_the_numbers():
    card = NeuronCard(
        "mlp.gate",
        3,
        117,
        promoted=(TokenLogit(" kimchi", 5, 2.0), TokenLogit(" Seoul", 6, 1.5), TokenLogit(" Korean", 7, 1.0)),
        countries=(CountryStat("South Korea", 8, 3.1), CountryStat("Japan", 8, 1.0)),
        sources=(SourceStat("identification", 16, 2.0, 4.0), SourceStat("control", 16, 1.0, 2.0)),
        control_ratio=2.0,
        effect=0.012,
    )
    assert summary_line(card, {"South Korea": 1.0, "Japan": 3.1}) == (
        "promotes ' kimchi', ' Seoul', ' Korean'; fires most on South Korea questions, 3.1× its mean on the "
        "others; 2.0× more on culture than on control items; zeroing it lowers p by 0.012"
    )
    flipped = NeuronCard("attn.k", 0, 1, countries=card.countries, control_ratio=0.5)
    assert summary_line(flipped, {"South Korea": -1.0}) == (
        "no output direction; fires most on South Korea questions (mean 3.1, others -1); "
        "2.0× less on culture than on control items"
    )
    # ratios that read 1.0 at the precision shown say so in words, with two decimals
    alike = NeuronCard("attn.k", 0, 1, countries=card.countries, control_ratio=0.98)
    assert summary_line(alike, {"South Korea": 3.05}) == (
        "no output direction; fires about alike on every country's questions (South Korea highest, 1.02×); "
        "about as much on culture as on control items (0.98×)"
    )


def test_cards_round_trip_through_jsonl_and_make_a_frame(tokenizer, tmp_path):
    model = tiny_model("llama")
    cards = neuron_cards(
        model, tokenizer, ["mlp.gate:0:1", "attn.v:1:2"], make_examples(5), options=CardOptions(bins=4)
    )
    path = cards.write(tmp_path / "cards.jsonl")
    back = read_cards(path)
    assert [c.to_dict() for c in back] == [c.to_dict() for c in cards]
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert [(x["site"], x["layer"], x["index"]) for x in lines] == [("mlp.gate", 0, 1), ("attn.v", 1, 2)]
    assert set(lines[0]["promoted"][0]) == {"token", "id", "logit"}
    assert {"id", "activation", "position", "token"} <= set(lines[0]["top_examples"][0])
    frame = cards.frame()
    assert list(frame["site"]) == ["mlp.gate", "attn.v"] and frame["summary"].str.len().min() > 10
    assert isinstance(back, CardSet) and back.get("attn.v:1:2").index == 2
    (tmp_path / "bad.jsonl").write_text('{"site": "mlp.gate"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl line 1 is not a neuron card"):
        read_cards(tmp_path / "bad.jsonl")


def test_neurons_outside_the_model_and_sets_of_another_model_are_refused(tokenizer):
    model = tiny_model("llama")
    exs = make_examples(3)
    for spec, message in (
        ("mlp.gate:2:0", r"neuron mlp\.gate:2:0 is outside the model: layer 2, but this llama model has layers 0-1"),
        ("mlp.gate:0:96", r"neuron mlp\.gate:0:96 is outside the model: index 96, but mlp\.gate has channels 0-95"),
        ("mlp.in:0:1", r"this llama model has no site 'mlp\.in'"),
        ("mlp.gate-0-1", r"must look like SITE:LAYER:INDEX"),
    ):
        with pytest.raises(InputError, match=message):
            neuron_cards(model, tokenizer, [spec], exs)
    other = NeuronSet.from_neurons([], kind="general", num_layers=7, widths={"mlp.gate": 96})
    with pytest.raises(InputError, match="comes from a different model"):
        neuron_cards(model, tokenizer, ["mlp.gate:0:1"], exs, sets={"general": other})


# ---------------------------------------------------------------------------------------------
# the pipeline's cards, the run directory, the command


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


def test_the_pipeline_writes_a_card_for_the_top_neurons_of_every_set(run):
    out, _result, _model = run
    cards = read_cards(out / "neurons/cards.jsonl")
    general = NeuronSet.load(out / "neurons/general.json")
    mlp = sorted((n for n in general.neurons if n.site.startswith("mlp.")), key=lambda n: -n.score)
    names = {c.name for c in cards}
    assert {f"{n.site}:{n.layer}:{n.index}" for n in mlp[:10]} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"]["cards"]["status"] == "done" and manifest["steps"]["cards"]["info"]["cards"] == len(cards)
    for card in cards:
        assert card.sets and card.summary and card.top_examples and card.density is not None
        for m in card.sets:
            if m.set.startswith("specific:"):  # the card's country score is the one the set was selected by
                country = m.set.partition(":")[2]
                stat = next(c for c in card.countries if c.country == country)
                assert stat.attribution == pytest.approx(m.score, rel=1e-9)
    assert {s.source for s in cards[0].sources} == {"identification", "control", "nlu"}
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count('<details class="cv-row') == len(cards) and cards[0].summary.replace("'", "&#x27;") in report


def test_cards_from_run_reads_validity_frequencies_and_effects(run, tmp_path):
    out, _result, _model = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    general = NeuronSet.load(copy / "neurons/general.json")
    best = max(general.neurons, key=lambda n: n.score)
    folds = copy / "validity/folds"
    folds.mkdir(parents=True)
    general.save(folds / "fold0.json")
    NeuronSet.from_neurons([n for n in general.neurons if n != best], kind="general").save(folds / "fold1.json")
    general.save(folds / "template-cloze.json")
    with open(copy / "validity/faithfulness.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerows(
            [
                ["site", "layer", "index", "score", "effect", "stratum"],
                [best.site, best.layer, best.index, 0.1, 0.02, "top"],
            ]
        )
    name = f"{best.site}:{best.layer}:{best.index}"
    (card,) = cards_from_run(copy, neurons=[name], options=CardOptions(batch_size=4))
    assert card.frequency == {"folds": 0.5, "templates": 1.0}
    assert card.effect == pytest.approx(0.02) and card.effect_stratum == "top"
    assert card.summary.endswith("zeroing it lowers p by 0.02")
    assert "selected in 50% of the folds" in text_card(card)


def test_inspect_prints_the_saved_cards_without_loading_a_model(run, monkeypatch):
    out, _result, _model = run
    from culture_neurons.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the saved cards need no model"))
    saved = read_cards(out / "neurons/cards.jsonl")
    result = CliRunner().invoke(cli, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    assert all(c.name in result.output and c.summary in result.output for c in saved)
    mexico = CliRunner().invoke(cli, ["inspect", str(out), "--set", "Mexico", "--top", "2", "--json"])
    lines = [json.loads(x) for x in mexico.output.splitlines()]
    assert len(lines) == 2 and all(any(m["set"] == "specific:Mexico" for m in x["sets"]) for x in lines)
    assert [min(m["rank"] for m in x["sets"] if m["set"] == "specific:Mexico") for x in lines] == [1, 2]


def test_inspect_computes_new_cards_and_says_what_is_wrong_in_one_line(run, tmp_path):
    out, _result, model_dir = run
    runner = CliRunner()
    fresh = runner.invoke(cli, ["inspect", str(out), "--neuron", "mlp.up:1:4", "--examples-shown", "1"])
    assert fresh.exit_code == 0, fresh.output
    assert (
        fresh.output.startswith("mlp.up:1:4 · in no set of the run") and "writes through mlp.down_proj" in fresh.output
    )
    cases = [
        (["inspect", str(out), "--neuron", "mlp.gate:5:1"], "error: neuron mlp.gate:5:1 is outside the model: layer 5"),
        (["inspect", str(out), "--neuron", "attn.q:0:1", "--lens"], "error: neuron attn.q:0:1: attn.q has no output"),
        (["inspect", str(out), "--set", "Atlantis"], "error: no neuron set 'Atlantis' in this run"),
    ]
    other = NeuronSet.from_neurons([], kind="general", num_layers=9, widths={"mlp.gate": 96})
    other.save(tmp_path / "other.json")
    examples = tmp_path / "ex.jsonl"
    examples.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in make_examples(3)))
    cases.append(
        (
            [
                "inspect",
                "--model",
                str(model_dir),
                "--neurons",
                str(tmp_path / "other.json"),
                "--examples",
                str(examples),
            ],
            "error: NeuronSet 'general' comes from a different model",
        )
    )
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code != 0 and result.output.strip().startswith(message), (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    lens = runner.invoke(cli, ["inspect", "--model", str(model_dir), "--neuron", "attn.v:1:19", "--lens"])
    assert lens.exit_code == 0 and "summed over query heads 2, 3" in lens.output, lens.output
    explicit = runner.invoke(
        cli, ["inspect", "--model", str(model_dir), "--neurons", "mlp.gate:0:1,attn.k:1:0", "--examples", str(examples)]
    )
    assert explicit.exit_code == 0 and explicit.output.count("histogram of example activations") == 2, explicit.output


def test_cards_section_is_checked_and_switched_like_every_section(tmp_path):
    from culture_neurons.pipeline.config import load_config
    from culture_neurons.pipeline.ignored import ignored_values
    from culture_neurons.pipeline.run import STAGES

    def config(**cards):
        return load_config(tiny_run_config(tmp_path / "m", tmp_path / "r", cards=cards))

    stage = next(s for s in STAGES if s.name == "cards")
    assert stage.enabled(config()) and stage.enabled(config(top=3)) and not stage.enabled(config(enabled=False))
    assert ignored_values(config(enabled=False, top=3)) == [
        "[config] config key 'cards.top' is ignored: [cards] says enabled = false"
    ]
    with pytest.raises(ConfigError, match=r"config key 'cards\.top' must be an integer of at least 0, got -1"):
        config(top=-1)
    with pytest.raises(ConfigError, match=r"unknown config key 'cards\.tops'; did you mean 'top'\?"):
        config(tops=3)
    names = [s.name for s in STAGES]
    assert names.index("validate") < names.index("cards") < names.index("report")


def test_a_site_map_declares_its_writers_for_the_lens(tokenizer, tmp_path):
    model = _random_norms(tiny_model("llama"))
    sites = '[sites."mlp.gate"]\nmodule = "mlp.gate_proj"\n[sites."attn.v"]\nmodule = "self_attn.v_proj"\n'
    bare = tmp_path / "bare.toml"
    bare.write_text('layers = "model.layers"\n' + sites)
    full = tmp_path / "full.toml"
    full.write_text(
        'layers = "model.layers"\n[writers]\nmlp = "mlp.down_proj"\nattn = "self_attn.o_proj"\n'
        'final_norm = "model.norm"\n' + sites
    )
    refs = [NeuronRef("mlp.gate", 1, 4), NeuronRef("attn.v", 0, 20)]
    builtin = logit_lens(model, tokenizer, refs)
    mapped = logit_lens(model, tokenizer, refs, adapter=get_adapter(model, full))
    assert [[t.id for t in x.promoted] for x in mapped] == [[t.id for t in x.promoted] for x in builtin]
    (unknown, _) = logit_lens(model, tokenizer, refs, adapter=get_adapter(model, bare))
    assert unknown.through is None and "declares no writers" in unknown.note
    broken = tmp_path / "broken.toml"
    broken.write_text('layers = "model.layers"\n[writers]\nmlp = "mlp.down_proj"\n' + sites)
    with pytest.raises(ArchitectureError, match="table 'writers' needs strings mlp, attn, final_norm"):
        get_adapter(model, broken)


def test_nlu_items_the_target_cannot_score_are_left_out(tokenizer):
    from culture_neurons.cards.api import scorable

    good = _choice_examples(3, groups=("nlu",), tag="n")
    bare = replace(good[0], id="no-options", options=None, labels=None)
    assert [e.id for e in scorable(tokenizer, [good[0], bare, *good[1:]], "choice", False)] == ["n0", "n1", "n2"]
    assert scorable(tokenizer, good, "choice", False) == good and scorable(tokenizer, [], "choice", False) == []
