"""Scoring methods beyond gxa: ig and ig-joint against captum's LayerIntegratedGradients, completeness,
convergence across quadrature rules, atp-mean against a slow per-neuron loop, the recorded method,
and selection refusing a control scored another way."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.attribution.batching import target_rows
from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions, score_examples
from culture_neurons.attribution.methods.means import prompt_means
from culture_neurons.attribution.methods.rules import RULES, quadrature
from culture_neurons.data import Example
from culture_neurons.errors import InputError, ScoringError, TableError
from culture_neurons.intervention import channel_means
from culture_neurons.likelihood import collate_rows, length_batches
from culture_neurons.models.adapters import get_adapter
from culture_neurons.models.hooks import forward_hooks
from tests.selection_helpers import synthetic_table
from tests.tiny import FAMILIES, assert_close, make_examples, tiny_model


def relative(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def label_prob(model, input_ids, attention_mask, position_ids, gold):
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=1, use_cache=False
    ).logits
    return logits[:, -1].float().log_softmax(-1).gather(1, gold[:, None]).squeeze(1).exp()


def captum_tables(model, tokenizer, examples, site, rule, steps, batch_size, means=None, joint=False):
    """captum's LayerIntegratedGradients on each layer's ``site`` module (``joint``: all layers in one call),
    reduced as the engine does: p x max over real positions, summed per group -> ``{layer: [groups, channels]}``.

    captum takes baselines in input space, so the input is a gate: 1 runs the model as it is, 0 makes a
    forward hook (registered before captum's own) put the baseline in the site's output; captum records
    the layer's output under both and interpolates between them.
    """
    from captum.attr import LayerIntegratedGradients

    groups = list(dict.fromkeys(ex.group for ex in examples))
    modules = get_adapter(model).sites[site].modules
    width = get_adapter(model).sites[site].width
    out = {layer: torch.zeros(len(groups), width, dtype=torch.float64) for layer in range(len(modules))}
    gate: dict[str, torch.Tensor] = {}

    def gated(layer):
        def hook(_m, _i, output):
            base = torch.zeros_like(output) if means is None else means[site][layer].to(output.dtype).expand_as(output)
            return torch.where(gate["g"].view(-1, 1, 1) > 0.5, output, base)

        return hook

    def forward(g, *args):
        gate["g"] = g
        return label_prob(model, *args)

    rows = target_rows(tokenizer, examples, "label", use_chat_template=False)
    flags = [(q, q.requires_grad) for q in model.parameters()]
    handles = [m.register_forward_hook(gated(layer)) for layer, m in enumerate(modules)]
    try:
        for q, _ in flags:
            q.requires_grad_(False)
        for idx in length_batches(rows, batch_size):
            b = collate_rows(idx, [rows[i] for i in idx], tokenizer.pad_token_id, "left")
            args = (b.input_ids, b.attention_mask.long(), b.position_ids, b.score_tok[:, 0])
            ones = torch.ones(len(idx))
            with torch.no_grad():
                p = forward(ones, *args).double()
            group = torch.tensor([groups.index(examples[i].group) for i in idx])
            for layers in [list(range(len(modules)))] if joint else [[layer] for layer in range(len(modules))]:
                ig = LayerIntegratedGradients(forward, [modules[i] for i in layers] if joint else modules[layers[0]])
                attrs = ig.attribute(
                    ones, baselines=torch.zeros(len(idx)), additional_forward_args=args, n_steps=steps, method=rule
                )
                for layer, a in zip(layers, attrs if joint else [attrs]):
                    a = a.double()
                    if rule == "riemann_trapezoid":  # captum weighs the trapezoid's points 1/k instead of 1/(k-1)
                        a = a * steps / (steps - 1)
                    best = a.masked_fill(~b.attention_mask[..., None], float("-inf")).amax(1) * p[:, None]
                    out[layer].index_add_(0, group, best)
    finally:
        for h in handles:
            h.remove()
        for q, flag in flags:
            q.requires_grad_(flag)
    return out


@pytest.mark.filterwarnings("ignore:Multiple layers provided")  # captum's note on joint layers
@pytest.mark.parametrize(
    ("site", "rule", "baseline", "joint"),
    [
        ("mlp.up", "gausslegendre", "zero", False),
        ("attn.v", "riemann_trapezoid", "zero", False),
        ("mlp.gate", "riemann_middle", "mean", False),
        ("attn.k", "riemann_left", "zero", False),
        ("attn.q", "riemann_right", "mean", False),
        ("mlp.up", "gausslegendre", "mean", True),
    ],
)
def test_ig_equals_captum_layer_integrated_gradients(tokenizer, llama, site, rule, baseline, joint):
    pytest.importorskip("captum")
    examples = make_examples(5)
    means = channel_means(llama, tokenizer, examples, chat_template=False) if baseline == "mean" else None
    table = score_examples(
        llama,
        tokenizer,
        examples,
        method="ig-joint" if joint else "ig",
        sites=(site,),
        ig_rule=rule,
        ig_steps=8,
        ig_baseline=baseline,
        batch_size=3,
        chat_template=False,
        progress=False,
        means=means,
    )
    reference = captum_tables(llama, tokenizer, examples, site, rule, 8, 3, means, joint)
    for layer, ref in reference.items():
        assert relative(table.scores[site][layer].T, ref) < 1e-5, f"{site} layer {layer}"


def probability(model, tokenizer, examples, hooks=()):
    """p of each example (label target, one example per group here), under ``hooks``."""
    with forward_hooks(hooks):
        return score_examples(model, tokenizer, examples, sites=("mlp.gate",), batch_size=3, progress=False).prob_sums


def completeness_errors(model, tokenizer, site, layer, rule, steps, baseline="zero", family_means=None):
    """|sum over channels and positions of one site's ig attributions - (p - p with the site at its baseline)|,
    relative to the largest change, for three examples (one per group) and each number of ``steps``."""
    examples = make_examples(3)
    point = get_adapter(model).sites[site]
    channels = point.channels

    def at_baseline(_m, _i, output):
        out = output.clone()
        out[..., channels] = 0.0 if family_means is None else family_means[site][layer].to(out.dtype)
        return out

    p = probability(model, tokenizer, examples)
    change = p - probability(model, tokenizer, examples, [(point.modules[layer], at_baseline)])
    errors = []
    for k in steps:
        table = score_examples(
            model,
            tokenizer,
            examples,
            method="ig",
            sites=(site,),
            ig_rule=rule,
            ig_steps=k,
            ig_baseline=baseline,
            aggregation="sum",  # the sum over positions: completeness holds before any max
            batch_size=3,
            progress=False,
            means=family_means,
        )
        total = table.scores[site][layer].double().sum(0) / p  # each group holds one example; undo the p factor
        errors.append(((total - change).abs().max() / change.abs().max()).item())
    return errors


@pytest.mark.parametrize(("site", "layer"), [("mlp.up", 1), ("attn.q", 0)])
def test_ig_completeness_error_shrinks_with_steps(tokenizer, llama, site, layer):
    errors = completeness_errors(llama, tokenizer, site, layer, "riemann_trapezoid", (8, 16, 64))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3
    assert completeness_errors(llama, tokenizer, site, layer, "gausslegendre", (64,))[0] < 1e-4


def test_ig_completeness_with_a_mean_baseline_and_a_fused_site(tokenizer):
    """phi3's attn.k is a slice of the fused qkv_proj output: only its channels move along the path."""
    model = tiny_model("phi3")
    means = channel_means(model, tokenizer, make_examples(7))
    errors = completeness_errors(model, tokenizer, "attn.k", 1, "gausslegendre", (4, 32), "mean", means)
    assert errors[1] < 1e-4 and errors[1] < errors[0]


def test_ig_joint_completeness_over_every_layer(tokenizer, llama):
    """ig-joint's attributions over all layers of a site add up to the change when every layer's output is zeroed."""
    examples = make_examples(3)
    modules = get_adapter(llama).sites["mlp.up"].modules
    p = probability(llama, tokenizer, examples)
    zeroed = probability(llama, tokenizer, examples, [(m, lambda _m, _i, o: torch.zeros_like(o)) for m in modules])
    table = score_examples(
        llama, tokenizer, examples, method="ig-joint", sites=("mlp.up",), ig_steps=64, aggregation="sum", progress=False
    )
    total = table.scores["mlp.up"].double().sum((0, 1)) / p
    assert relative(total, p - zeroed) < 1e-4


def test_ig_rules_converge_with_64_steps(tokenizer, llama):
    """With many steps every rule approaches the same integral: the tables agree closely (the Riemann
    end-point rules, first order, least closely)."""
    examples = make_examples(4)
    tables = {
        rule: score_examples(llama, tokenizer, examples, method="ig", ig_steps=64, ig_rule=rule, progress=False)
        for rule in RULES
    }
    ref = tables["gausslegendre"]
    for rule, table in tables.items():
        tol = 5e-2 if rule in ("riemann_left", "riemann_right") else 5e-3
        for site in ref.sites:
            assert relative(table.scores[site], ref.scores[site]) < tol, f"{rule} {site}"
    coarse = score_examples(llama, tokenizer, examples, method="ig", ig_steps=4, ig_rule="riemann_left", progress=False)
    assert max(relative(coarse.scores[s], ref.scores[s]) for s in ref.sites) > 5e-2  # the tolerance can fail


def test_quadrature_rules_integrate_polynomials():
    for rule in RULES:
        alphas, weights = quadrature(rule, 64)
        assert abs(weights.sum().item() - 1) < 1e-12
        first_order = rule in ("riemann_left", "riemann_right")  # error 1/(2k) on x^2
        assert abs((weights * alphas**2).sum().item() - 1 / 3) < (1e-2 if first_order else 1e-4)
    alphas, weights = quadrature("gausslegendre", 4)
    assert abs((weights * alphas**7).sum().item() - 1 / 8) < 1e-12  # exact to degree 2k - 1


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_at_the_real_output_is_gxa(tokenizer, family):
    """ig with one step at alpha = 1 is a ⊙ ∂p/∂a at the real output: gxa (fused sites, tuple-returning
    layers and wrapped models included, with the layers below each site replaying their real output)."""
    model = tiny_model(family)
    examples = make_examples(5)
    gxa = score_examples(model, tokenizer, examples, batch_size=3, progress=False)
    ig = score_examples(
        model, tokenizer, examples, method="ig", ig_steps=1, ig_rule="riemann_right", batch_size=3, progress=False
    )
    assert_close(ig, {s: t.double() for s, t in gxa.scores.items()}, rtol=1e-6)


OPTIONS = [("tea", "rice and bread", "sushi", "Mexico"), ("Japan", "Mexico", "Spain", "Korea")]


@pytest.mark.parametrize("family", ["llama", "phi3"])
@pytest.mark.parametrize("method", ["ig", "ig-joint"])
def test_ig_choice_target_is_the_same_on_every_path(tokenizer, family, method):
    """The choice target packed, from the prompt's KV cache, and recomputed per option row give one table."""
    model = tiny_model(family)
    items = [
        Example(
            id=f"c{i}",
            prompt=f"Question {i}: which one fits {'best ' * (i % 3)}here?",
            answer="ABCD"[(i * 3) % 4],
            group=["Japan", "Mexico"][i % 2],
            options=OPTIONS[i % 2],
            labels=("A", "B", "C", "D"),
        )
        for i in range(5)
    ]
    opts = ScoringOptions(target="choice", method=method, ig_steps=4, batch_size=3)
    tables = {
        share: ScoringEngine(model, tokenizer, opts, share_prompt=share).score(items, progress=False)
        for share in (False, True, "cache")
    }
    for share in (True, "cache"):
        assert_close(tables[share], {s: t.double() for s, t in tables[False].scores.items()}, rtol=1e-5)


def keep(captured: dict, key):
    """A forward hook that keeps a module's output (with its gradient) under ``key``."""

    def hook(_m, _i, output):
        output.retain_grad()
        captured[key] = output

    return hook


def naive_atp_mean(model, tokenizer, examples, groups, means):
    """Slow, obviously-correct atp-mean: one example at a time, retain_grad on each site output, a loop over
    neurons of p x max over positions of (a - m) x g."""
    adapter = get_adapter(model)
    out = {s: torch.zeros(adapter.num_layers, w, len(groups), dtype=torch.float64) for s, w in adapter.widths.items()}
    for ex in examples:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": ex.prompt}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        target = tokenizer(text + ex.answer, add_special_tokens=False)["input_ids"][len(prompt_ids)]
        captured: dict = {}
        hooks = [
            (m, keep(captured, (s, layer))) for s, site in adapter.sites.items() for layer, m in enumerate(site.modules)
        ]
        with forward_hooks(hooks):
            logits = model(input_ids=torch.tensor([prompt_ids], device=model.device)).logits[0, -1]
        p = torch.softmax(logits.double(), -1)[target]
        p.backward()
        for (s, layer), kept in captured.items():
            a = kept.detach()[0].double()
            g = kept.grad[0].double()
            for c in range(a.shape[1]):  # deliberately per neuron
                value = ((a[:, c] - means[s][layer, c].double()) * g[:, c]).max()
                out[s][layer, c, groups.index(ex.group)] += (p.detach() * value).cpu()
    model.zero_grad(set_to_none=True)
    return out


def test_atp_mean_equals_a_slow_per_neuron_loop(tokenizer, llama):
    examples = make_examples(5)
    means = channel_means(llama, tokenizer, make_examples(8))  # a reference set of its own, given
    table = score_examples(llama, tokenizer, examples, method="atp-mean", means=means, batch_size=3, progress=False)
    assert_close(table, naive_atp_mean(llama, tokenizer, examples, table.groups, means))
    gxa = score_examples(llama, tokenizer, examples, batch_size=3, progress=False)
    assert any(relative(table.scores[s], gxa.scores[s]) > 1e-2 for s in gxa.sites)  # the baseline matters


def test_atp_mean_with_zero_means_is_gxa_bit_for_bit(tokenizer, llama):
    examples = make_examples(5)
    zeros = {s: torch.zeros(2, w) for s, w in get_adapter(llama).widths.items()}
    table = score_examples(llama, tokenizer, examples, method="atp-mean", means=zeros, batch_size=3, progress=False)
    gxa = score_examples(llama, tokenizer, examples, batch_size=3, progress=False)
    assert all(torch.equal(table.scores[s], gxa.scores[s]) for s in gxa.sites)


@pytest.mark.parametrize("chat_template", [True, False])
def test_computed_means_are_the_mean_ablation_means(tokenizer, llama, chat_template):
    """Means computed on the scored examples are intervention.channel_means of the same examples."""
    examples = make_examples(7)
    adapter = get_adapter(llama)
    rows = target_rows(tokenizer, examples, "answer", chat_template)
    ours = prompt_means(llama, adapter, adapter.site_names, rows, tokenizer.pad_token_id, 3)
    theirs = channel_means(llama, tokenizer, examples, chat_template=chat_template)
    for site in adapter.site_names:
        assert torch.allclose(ours[site], theirs[site], rtol=1e-5, atol=1e-6)
    computed = score_examples(
        llama, tokenizer, examples, method="atp-mean", chat_template=chat_template, progress=False
    )
    given = score_examples(
        llama, tokenizer, examples, method="atp-mean", chat_template=chat_template, means=theirs, progress=False
    )
    assert_close(computed, {s: t.double() for s, t in given.scores.items()}, rtol=1e-4)
    assert computed.method["means"] == "scored examples" and given.method["means"] == "given"


def test_the_method_is_recorded_and_survives_a_round_trip(tokenizer, llama, tmp_path):
    examples = make_examples(3)
    gxa = score_examples(llama, tokenizer, examples, progress=False)
    assert gxa.method == {"name": "gxa", "baseline": "zero"}
    assert "ig_steps" not in gxa.options and gxa.options["method"] == "gxa"
    ig = score_examples(
        llama, tokenizer, examples, method="ig", ig_steps=3, ig_rule="riemann_middle", sites=("attn.v",), progress=False
    )
    ig.save(tmp_path / "ig.safetensors")
    loaded = type(ig).load(tmp_path / "ig.safetensors")
    assert loaded.method == {"name": "ig", "baseline": "zero", "steps": 3, "rule": "riemann_middle"}
    assert loaded.method_label() == "ig (zero baseline, 3 riemann_middle steps)"
    assert loaded.options["ig_steps"] == 3
    atp = score_examples(llama, tokenizer, examples, method="atp-mean", progress=False)
    assert atp.method["baseline"] == "mean" and len(atp.method["means_sha256"]) == 64
    with pytest.raises(TableError, match="different methods"):
        _ = gxa + score_examples(llama, tokenizer, make_examples(4)[3:], method="atp-mean", progress=False)


def test_identity_of_gxa_is_unchanged_and_other_methods_differ():
    """gxa's identity (checkpoints, pipeline steps) has the keys it had before methods existed."""
    before = {"target", "aggregation", "control", "reference_compat", "batch_size", "padding_side", "chat_template"}
    assert set(ScoringOptions().identity()) == before | {"sites"}
    assert ScoringOptions(method="ig").identity()["ig_steps"] == 32
    assert "ig_steps" not in ScoringOptions(method="atp-mean").identity()
    assert ScoringOptions(method="ig", ig_steps=8).identity() != ScoringOptions(method="ig").identity()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "shapley"}, "unknown method 'shapley'"),
        ({"method": "ig", "ig_steps": 0}, "ig_steps must be an integer of at least 1"),
        ({"method": "ig", "ig_rule": "riemann_trapezoid", "ig_steps": 1}, "at least 2 for riemann_trapezoid"),
        ({"method": "ig", "ig_rule": "simpson"}, "unknown ig_rule 'simpson'"),
        ({"method": "ig-joint", "ig_baseline": "median"}, "unknown ig_baseline 'median'"),
        ({"method": "ig", "recompute": True}, "recompute applies to gxa and atp-mean"),
    ],
)
def test_bad_method_options_are_refused(options, message):
    with pytest.raises(ScoringError, match=message):
        ScoringOptions(**options).validate()


def test_given_means_are_checked(tokenizer, llama):
    examples = make_examples(3)
    with pytest.raises(ScoringError, match="no site 'mlp.up'"):
        score_examples(llama, tokenizer, examples, method="atp-mean", means={"mlp.gate": torch.zeros(2, 96)})
    bad = {s: torch.zeros(3, w) for s, w in get_adapter(llama).widths.items()}
    with pytest.raises(ScoringError, match=r"expected a finite \[2, 96\] table"):
        score_examples(llama, tokenizer, examples, method="atp-mean", means=bad)


def test_selection_refuses_a_control_scored_with_another_method():
    from culture_neurons.selection import select_general

    groups = ["Japan", "Mexico"]
    data = synthetic_table(groups, seed=1, dataset="blend")
    control = synthetic_table(groups, seed=2, control=True, dataset="blend-control")
    control.meta["method"] = {"name": "atp-mean", "baseline": "mean"}
    with pytest.raises(InputError) as err:
        select_general([data], [control], None)
    message = str(err.value)
    assert "blend-control" in message and "atp-mean (mean baseline)" in message and "gxa (zero baseline)" in message
    assert "\n" not in message
    control.meta["method"] = {"name": "gxa", "baseline": "zero"}
    assert len(select_general([data], [control], None, t_mlp=0.2, t_attn=0.2)) > 0


def test_config_and_cli_take_the_method(tmp_path):
    from click.testing import CliRunner

    from culture_neurons.cli import cli
    from culture_neurons.errors import ConfigError
    from culture_neurons.pipeline.config import load_config
    from culture_neurons.pipeline.sections import scoring_options
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    model = save_tiny_model(tmp_path / "model")
    config = tiny_run_config(model, tmp_path / "run", score={"method": "ig", "ig_steps": 4, "ig_baseline": "mean"})
    options = scoring_options(load_config(config))
    assert (options.method, options.ig_steps, options.ig_baseline) == ("ig", 4, "mean")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        load_config(tiny_run_config(model, tmp_path / "run", score={"method": "nope"}))
    help_text = CliRunner().invoke(cli, ["score", "--help"]).output
    assert "--ig-steps" in help_text and "sites x layers x --ig-steps passes per example" in " ".join(help_text.split())


def test_an_interrupted_ig_run_resumes_bit_identical_and_a_gxa_checkpoint_is_refused(
    tokenizer, llama, tmp_path, monkeypatch
):
    import culture_neurons.attribution.engine as engine_mod

    examples = make_examples(9)
    options = {"method": "ig", "ig_steps": 3, "batch_size": 2, "progress": False}
    full = score_examples(llama, tokenizer, examples, **options)
    ckpt = tmp_path / "s.ckpt"
    original = engine_mod.ScoringEngine._target_prob
    calls = {"n": 0}

    def dies_in_the_third_batch(self, batch, gold):  # 11 passes a batch: p, then 5 sites x 2 layers
        calls["n"] += 1
        if calls["n"] == 27:
            raise KeyboardInterrupt
        return original(self, batch, gold)

    monkeypatch.setattr(engine_mod.ScoringEngine, "_target_prob", dies_in_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        score_examples(llama, tokenizer, examples, checkpoint=ckpt, checkpoint_every=1, **options)
    with pytest.raises(ScoringError, match="belongs to a different scoring run"):
        score_examples(llama, tokenizer, examples, batch_size=2, progress=False, checkpoint=ckpt)  # gxa
    calls["n"] = -100  # counts the resumed run's passes without dying
    resumed = score_examples(llama, tokenizer, examples, checkpoint=ckpt, checkpoint_every=1, **options)
    assert calls["n"] + 100 == 3 * 11  # batches 3 to 5 only
    assert all(torch.equal(full.scores[s], resumed.scores[s]) for s in full.sites)
    assert not ckpt.exists()
    assert not any(m._forward_hooks for m in llama.modules()) and all(p.requires_grad for p in llama.parameters())
