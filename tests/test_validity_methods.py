"""The faithfulness comparison of scoring methods (``faith_methods``) against slow, obviously correct versions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from culture_neurons.attribution.engine import score_examples
from culture_neurons.errors import InputError
from culture_neurons.intervention import channel_means, intervene
from culture_neurons.validity import TargetRows, ValidityOptions, ablation_effects, single_neurons
from culture_neurons.validity.faithfulness import faithfulness_parts, spearman
from culture_neurons.validity.methods import compare_methods, rho_difference
from culture_neurons.validity.readings import reading_faithfulness
from tests.test_validity import _set, _slow_choice_p
from tests.test_validity_run import OPTIONS, _study
from tests.tiny import build_tokenizer, tiny_model
from tests.validity_helpers import choice_examples


def test_mean_ablation_effects_match_a_one_at_a_time_loop():
    """``ablation_effects(means=...)`` sets each unit's channels to their means, replica by replica: equal to
    ``intervene(op="mean")`` on one unit at a time with the slow one-sequence-per-option p."""
    model, tok = tiny_model("llama", seed=3), build_tokenizer(chat_template=False)
    exs = choice_examples(4, templates=("cloze",))
    rows = TargetRows(tok, exs, "choice", chat_template=False)
    ns = _set({("mlp.gate", 0, 3), ("mlp.gate", 1, 40), ("attn.q", 0, 7), ("attn.v", 1, 2)})
    means = channel_means(model, tok, exs, ns, batch_size=4, chat_template=False)
    units = single_neurons(ns) + [ns]
    effects, base = ablation_effects(model, rows, units, max_rows=16, means=means)
    zeroed, _ = ablation_effects(model, rows, units, max_rows=16)
    for unit, effect in zip(units, effects.tolist()):
        with intervene(model, unit, op="mean", means=means):
            after = [_slow_choice_p(model, tok, ex) for ex in exs]
        assert effect == pytest.approx(float(np.mean(base.numpy() - np.array(after))), abs=1e-5)
    assert not np.allclose(effects.numpy(), zeroed.numpy(), atol=1e-6)  # the means are not zero: not vacuous


def test_rho_difference_against_a_plain_loop():
    rng = np.random.default_rng(0)
    y = rng.normal(size=30)
    x, ref = y + rng.normal(scale=0.5, size=30), y + rng.normal(scale=2.0, size=30)
    got = rho_difference(x, y, ref, y, n_boot=200, seed=4)
    boot = []
    gen = np.random.default_rng(4)
    for idx in gen.integers(0, 30, size=(200, 30)):
        boot.append(spearman(x[idx], y[idx]) - spearman(ref[idx], y[idx]))
    assert got["value"] == pytest.approx(spearman(x, y) - spearman(ref, y))
    assert [got["ci_low"], got["ci_high"]] == pytest.approx(list(np.quantile(boot, [0.025, 0.975])))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    options = dataclasses.replace(OPTIONS, faith_methods=("gxa", "atp-mean", "ig-joint"))
    study = _study(tmp_path_factory.mktemp("methods"), options=options)
    study.scoring = dataclasses.replace(study.scoring, ig_steps=4)
    parts = faithfulness_parts(study)
    return study, parts, compare_methods(study, parts.examples, parts.rows, parts.sample, parts.zero_effects)


def test_each_method_is_judged_on_the_ablation_it_estimates(compared):
    study, parts, block = compared
    methods = block["methods"]
    assert list(methods) == ["gxa", "atp-mean", "ig-joint"]
    assert {m: e["ablation"] for m, e in methods.items()} == {"gxa": "zero", "atp-mean": "mean", "ig-joint": "zero"}
    # The score each method is judged by: its own table of the same examples, read at the sample's neurons.
    table = score_examples(
        study.model, study.tokenizer, parts.examples, dataclasses.replace(study.scoring, method="gxa"), progress=False
    )
    scores = np.array([float(table.dataset_score(n.site)[n.layer, n.index]) for n in parts.sample.neurons])
    assert methods["gxa"]["spearman"]["rho"] == pytest.approx(spearman(scores, parts.zero_effects))
    assert methods["gxa"]["cost_vs_gxa"] == 1.0 and methods["ig-joint"]["cost_vs_gxa"] > 0
    assert "vs_gxa" in methods["atp-mean"] and "vs_gxa" not in methods["gxa"]


def test_top_k_is_the_method_s_own_top_set_against_random_sets(compared):
    study, _, block = compared
    top = block["methods"]["gxa"]["top_k"]
    assert top["k"] == study.options.faith_top and top["m_random"] == study.options.random_seeds
    assert 1 <= top["rank"] <= top["m_random"] + 1 and top["p_mc"] == top["rank"] / (top["m_random"] + 1)
    assert top["excess"] == pytest.approx(top["drop"] - top["random_mean"])


def test_recommendation_follows_its_rule(compared):
    _, _, block = compared
    rec, methods = block["recommended"], block["methods"]
    assert rec["method"] in rec["level_with_best"] and rec["best_rho"] in rec["level_with_best"]
    cheapest = min(rec["level_with_best"], key=lambda m: (methods[m]["seconds"], m))
    assert rec["method"] == cheapest
    assert "recommended:" in reading_faithfulness({"headline": {}, **block, "spearman": {}})


def test_unknown_method_is_a_one_line_error():
    with pytest.raises(InputError, match="unknown scoring method 'taylor'"):
        ValidityOptions(faith_methods=("taylor",)).validate()
