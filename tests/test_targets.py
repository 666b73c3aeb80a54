"""The ``answer`` and ``choice`` targets against naive per-example references."""

from __future__ import annotations

import contextlib

import pytest
import torch
from click.testing import CliRunner

from culture_neurons.attribution.engine import score_examples
from culture_neurons.data import Example
from culture_neurons.errors import InputError, ScoringError
from culture_neurons.likelihood import grouped_softmax, option_continuation, option_logliks
from culture_neurons.models.adapters import get_adapter
from tests.tiny import FAMILIES, assert_close, build_tokenizer, tiny_model

OPTIONS = [
    ("tea", "rice", "sushi", "bread"),
    ("Japan", "Mexico", "Spain", "Korea"),
    ("noon", "breakfast", "tacos", "paella"),
]


def mcq(n=5):
    out = []
    for i in range(n):
        opts = OPTIONS[i % 3]
        rot = i % 4
        opts = opts[rot:] + opts[:rot]
        out.append(
            Example(
                id=f"q{i}",
                prompt=f"Question {i}: which one fits {'best ' * (i % 3)}here?",
                answer="ABCD"[(i * 3) % 4],
                group=["Japan", "Mexico"][i % 2],
                options=opts,
                labels=("A", "B", "C", "D"),
            )
        )
    return out


def _capture(adapter):
    captured, handles = {}, []
    for name, site in adapter.sites.items():
        for layer, module in enumerate(site.modules):

            def hook(_m, _i, out, key=(name, layer)):
                out.retain_grad()
                captured[key] = out

            handles.append(module.register_forward_hook(hook))
    return captured, handles


def _text(tok, ex):
    return tok.apply_chat_template([{"role": "user", "content": ex.prompt}], tokenize=False, add_generation_prompt=True)


def naive_answer(model, tok, examples, groups):
    adapter = get_adapter(model)
    out = {s: torch.zeros(adapter.num_layers, w, len(groups), dtype=torch.float64) for s, w in adapter.widths.items()}
    for ex in examples:
        text = _text(tok, ex)
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        full = tok(text + ex.answer, add_special_tokens=False)["input_ids"]
        answer = full[len(prompt) :]
        captured, handles = _capture(adapter)
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=torch.tensor([full[:-1]])).logits[0].double()
        logp = logits.log_softmax(-1)[len(prompt) - 1 :, :][torch.arange(len(answer)), answer]
        p = logp.mean().exp()
        p.backward()
        for h in handles:
            h.remove()
        for (name, layer), o in captured.items():
            site = adapter.sites[name]
            prod = site.take(o.detach())[0].double() * site.take(o.grad)[0].double()
            out[name][layer, :, groups.index(ex.group)] += p.detach() * prod.max(0).values
    return out


def naive_choice(model, tok, examples, groups):
    """Each option runs as its own sequence; prompt-position gradients are summed over the options."""
    adapter = get_adapter(model)
    out = {s: torch.zeros(adapter.num_layers, w, len(groups), dtype=torch.float64) for s, w in adapter.widths.items()}
    for ex in examples:
        text = _text(tok, ex)
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        runs, lls = [], []
        model.zero_grad(set_to_none=True)
        for opt in ex.options:
            full = tok(text + option_continuation(text, opt), add_special_tokens=False)["input_ids"]
            cont = full[len(prompt) :]
            captured, handles = _capture(adapter)
            logits = model(input_ids=torch.tensor([full[:-1]])).logits[0].double()
            for h in handles:
                h.remove()
            lls.append(logits.log_softmax(-1)[len(prompt) - 1 :, :][torch.arange(len(cont)), cont].mean())
            runs.append(captured)
        p = torch.softmax(torch.stack(lls), 0)[ex.labels.index(ex.answer)]
        p.backward()
        P = len(prompt)
        for key in runs[0]:
            site = adapter.sites[key[0]]
            a0 = site.take(runs[0][key].detach())[0].double()
            g_sum = sum(site.take(r[key].grad)[0].double()[:P] for r in runs)
            best = (a0[:P] * g_sum).max(0).values
            for r in runs:
                a, g = site.take(r[key].detach())[0].double(), site.take(r[key].grad)[0].double()
                if a.shape[0] > P:
                    best = torch.maximum(best, (a[P:] * g[P:]).max(0).values)
            out[key[0]][key[1], :, groups.index(ex.group)] += p.detach() * best
    return out


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_answer_target_matches_naive(tokenizer, family):
    model = tiny_model(family)
    examples = [
        Example(id=f"a{i}", prompt=f"Which country eats {w}?", answer=ans, group=g)
        for i, (w, ans, g) in enumerate(
            [("sushi", "Japan", "Japan"), ("tacos and rice", "Mexico", "Mexico"), ("paella", "Spain, surely", "Japan")]
        )
    ]
    table = score_examples(model, tokenizer, examples, target="answer", batch_size=3, progress=False)
    assert table.meta["options"]["target"] == "answer"
    assert_close(table, naive_answer(model, tokenizer, examples, ["Japan", "Mexico"]))


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_choice_target_matches_naive(tokenizer, family):
    model = tiny_model(family)
    examples = mcq(4)
    table = score_examples(model, tokenizer, examples, target="choice", batch_size=3, progress=False)
    assert_close(table, naive_choice(model, tokenizer, examples, ["Japan", "Mexico"]))


@pytest.mark.parametrize("target", ["answer", "choice"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batch_invariance(tokenizer, llama, target, padding_side):
    examples = mcq(6)
    if target == "answer":
        examples = [
            Example(id=e.id, prompt=e.prompt, answer=e.options[i % 4] + " indeed" * (i % 2), group=e.group)
            for i, e in enumerate(examples)
        ]
    batched = score_examples(
        llama, tokenizer, examples, target=target, batch_size=4, padding_side=padding_side, progress=False
    )
    alone = None
    for ex in examples:
        one = score_examples(llama, tokenizer, [ex], groups=batched.groups, target=target, batch_size=1, progress=False)
        alone = one if alone is None else alone + one
    assert_close(batched, {s: t.double() for s, t in alone.scores.items()})
    assert torch.allclose(batched.prob_sums, alone.prob_sums, rtol=1e-6)


def test_choice_probabilities_sum_to_one_and_match_loglik_scorer(tokenizer, llama):
    examples = mcq(5)
    lls = option_logliks(llama, tokenizer, examples, batch_size=2)
    assert [len(x) for x in lls] == [4] * 5
    flat = torch.tensor([v for x in lls for v in x], dtype=torch.float64)
    groups = torch.arange(5).repeat_interleave(4)
    probs = grouped_softmax(flat, groups, 5)
    assert torch.allclose(
        torch.zeros(5, dtype=torch.float64).index_add(0, groups, probs), torch.ones(5, dtype=torch.float64)
    )
    gold = probs.view(5, 4)[torch.arange(5), torch.tensor(["ABCD".index(e.answer) for e in examples])]
    table = score_examples(llama, tokenizer, examples, target="choice", batch_size=2, progress=False)
    by_group = {g: gold[[i for i, e in enumerate(examples) if e.group == g]].sum() for g in table.groups}
    assert torch.allclose(table.prob_sums, torch.stack([by_group[g] for g in table.groups]), rtol=1e-5)


def test_certain_option_gives_p_near_one(tokenizer):
    model = tiny_model("llama")
    ex = mcq(1)[0]
    text = _text(tokenizer, ex)
    gold = ex.options[ex.labels.index(ex.answer)]
    prompt_len = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    favoured = tokenizer(text + option_continuation(text, gold), add_special_tokens=False)["input_ids"][prompt_len:]
    for opt in ex.options:
        if opt != gold:
            other = tokenizer(text + option_continuation(text, opt), add_special_tokens=False)["input_ids"][prompt_len:]
            assert set(other) - set(favoured)
    # Zero the final norm and give the head a bias: every position then predicts the gold option's tokens.
    with torch.no_grad():
        model.model.norm.weight.zero_()
        head = torch.nn.Linear(64, model.config.vocab_size, bias=True)
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[favoured] = 10.0
    model.lm_head = head
    table = score_examples(model, tokenizer, [ex], target="choice", progress=False)
    assert table.prob_sums.sum().item() > 0.99
    # A one-token answer that the head always predicts: answer and label targets give p close to 1 too.
    (token,) = tokenizer(text + "A", add_special_tokens=False)["input_ids"][prompt_len:]
    with torch.no_grad():
        head.bias.fill_(-10.0)
        head.bias[token] = 10.0
    answer_ex = Example(id="t", prompt=ex.prompt, answer="A", group="Japan")
    for target in ("answer", "label"):
        assert (
            score_examples(model, tokenizer, [answer_ex], target=target, progress=False).prob_sums.sum().item() > 0.99
        )


def test_choice_needs_options(tokenizer, llama, tmp_path):
    ex = Example(id="no-opts", prompt="Which?", answer="A", group="Japan")
    with pytest.raises(InputError, match="example 'no-opts' has no options"):
        score_examples(llama, tokenizer, [ex], target="choice", progress=False)
    bad = Example(id="bad-gold", prompt="Which?", answer="E", group="Japan", options=("a", "b"), labels=("A", "B"))
    with pytest.raises(InputError, match="bad-gold"):
        score_examples(llama, tokenizer, [bad], target="choice", progress=False)
    with pytest.raises(ScoringError, match="reference_compat"):
        score_examples(llama, tokenizer, mcq(1), target="choice", reference_compat=True, progress=False)
    # Through the CLI: one line, exit 2, nothing written.
    model_dir = tmp_path / "m"
    llama.save_pretrained(model_dir)
    build_tokenizer().save_pretrained(model_dir)
    (tmp_path / "e.jsonl").write_text('{"id": "no-opts", "prompt": "Which?", "answer": "A", "group": "Japan"}\n')
    from culture_neurons.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "score",
            "-m",
            str(model_dir),
            "-e",
            str(tmp_path / "e.jsonl"),
            "-o",
            str(tmp_path / "s.safetensors"),
            "--target",
            "choice",
        ],
    )
    assert result.exit_code == 2 and "has no options" in result.output and not (tmp_path / "s.safetensors").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_loglik_equals_one_row_per_option(family, tokenizer):
    """Running each prompt once with a KV cache must give the full-row log-likelihoods: prompts of
    different lengths (left padding in the cache), longer than Gemma-2's sliding window, options of
    different token lengths, and with an intervention active on every position."""
    from culture_neurons.intervention import intervene
    from culture_neurons.selection import NeuronSet

    model = tiny_model(family)
    examples = [
        Example(
            id=f"q{i}",
            prompt=f"Question {i}: " + "which one fits best here? " * (1 + (i % 3)) + "Answer:",
            answer="Japan",
            group="Japan",
            options=("Japan", "Mexico and Spain in winter", "Iran", "UK"),
        )
        for i in range(5)
    ]
    adapter = get_adapter(model)
    site = "mlp.gate" if "mlp.gate" in adapter.widths else "mlp.in"
    neurons = NeuronSet.from_columns(
        [site, site, "attn.v"], [0, 1, 1], [0, 5, 3], num_layers=adapter.num_layers, widths=adapter.widths
    )
    for active in (False, True):
        with intervene(model, neurons) if active else contextlib.nullcontext():
            full = option_logliks(model, tokenizer, examples, batch_size=3, shared_prefix=False)
            shared = option_logliks(model, tokenizer, examples, batch_size=3, shared_prefix=True)
        assert torch.allclose(torch.tensor(shared), torch.tensor(full), atol=1e-5), (family, active)
    assert max(len(tokenizer(e.prompt)["input_ids"]) for e in examples) > 16  # beyond the sliding window
