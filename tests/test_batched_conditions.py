"""Many conditions in one pass (``intervene_rows``) against the one-condition path as the oracle.

Every condition of an experiment evaluated together must give, item by item, what evaluating it
alone under :func:`intervene` gives: the same predictions and option probabilities to 1e-5, for
every scorer, every op and every forward path (packed, KV-cache prefix, per-row padding).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from culture_neurons.data import Example
from culture_neurons.errors import InputError, ScoringError
from culture_neurons.evaluation.api import evaluate_rows, evaluate_together
from culture_neurons.evaluation.experiments import run_ablation, run_cross_culture
from culture_neurons.evaluation.scorers import EvalOptions, evaluate_examples
from culture_neurons.intervention import RowCondition, intervene, intervene_rows
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection import NeuronSet
from culture_neurons.selection.randomsets import RandomBaseline, select_random
from tests.tiny import tiny_model


def mcq_examples(n: int = 9) -> list[Example]:
    words = ["sushi", "tacos", "paella", "tea", "rice", "bread", "noon", "breakfast", "soup"]
    countries = ("Japan", "Mexico", "Spain")
    out = []
    for i in range(n):
        options = ("rice", "corn bread", "olive oil and garlic", "green tea")[: 2 + i % 3]
        out.append(
            Example(
                id=f"q{i}",
                prompt=f"Which food goes with {' '.join(words[: 1 + (i * 3) % 9])}? Answer:",
                answer=" " + "ABCD"[i % len(options)],
                options=options,
                labels=tuple("ABCD"[: len(options)]),
                group=countries[i % 3],
                dataset="tiny-mcq",
            )
        )
    return out


def sets_for(model, seed: int = 0, n: int = 12) -> list[NeuronSet]:
    adapter = get_adapter(model)
    gen = torch.Generator().manual_seed(seed)
    sites = [s for s in ("mlp.gate", "mlp.in", "attn.v", "attn.q") if s in adapter.sites][:2]
    cols = {"sites": [], "layers": [], "indices": []}
    for i in range(n):
        site = sites[i % len(sites)]
        cols["sites"].append(site)
        cols["layers"].append(int(torch.randint(adapter.num_layers, (1,), generator=gen)))
        cols["indices"].append(int(torch.randint(adapter.widths[site], (1,), generator=gen)))
    keys = dict.fromkeys(zip(cols["sites"], cols["layers"], cols["indices"]))
    s, layer, idx = zip(*keys)
    like = NeuronSet.from_columns(
        list(s), list(layer), list(idx), kind="general", num_layers=adapter.num_layers, widths=dict(adapter.widths)
    )
    return [like, select_random(like, 1), select_random(like, 2)]


def one_at_a_time(model, tokenizer, examples, conditions, opts):
    out = []
    for cond in conditions:
        if cond.neurons is None:
            out.append(evaluate_examples(model, tokenizer, examples, opts))
        else:
            with intervene(model, cond.neurons, cond.op, cond.factor, means=cond.means):
                out.append(evaluate_examples(model, tokenizer, examples, opts))
    return out


def assert_same_rows(alone, together, n_conditions):
    for c in range(n_conditions):
        for i, ref in enumerate(alone[c]):
            got = together[i * n_conditions + c]
            assert got["id"] == ref["id"]
            assert got["prediction"] == ref["prediction"], (c, i)
            assert got["correct"] == ref["correct"]
            if ref.get("option_probs") is not None:
                assert got["option_probs"] == pytest.approx(ref["option_probs"], abs=1e-5), (c, i)


def conditions_of(sets, means=None):
    out = [RowCondition(None), RowCondition(sets[0]), RowCondition(sets[1], "enhance", 3.0), RowCondition(sets[2])]
    if means is not None:
        out.append(RowCondition(sets[0], "mean", means=means))
    return out


def channel_means_like(model, neuron_set):
    adapter = get_adapter(model)
    gen = torch.Generator().manual_seed(5)
    return {s: torch.randn(adapter.num_layers, adapter.widths[s], generator=gen) for s in neuron_set.sites}


@pytest.mark.parametrize("scorer", ["loglik", "choice", "generate"])
def test_together_equals_one_at_a_time_for_every_scorer_and_op(tokenizer, scorer):
    model = tiny_model("llama")
    examples = mcq_examples()
    sets = sets_for(model)
    conditions = conditions_of(sets, channel_means_like(model, sets[0]))
    opts = EvalOptions(scorer=scorer, batch_size=3, chat_template=False)
    alone = one_at_a_time(model, tokenizer, examples, conditions, opts)
    with intervene_rows(model, conditions):
        together = evaluate_examples(model, tokenizer, examples, opts, copies=len(conditions))
    assert_same_rows(alone, together, len(conditions))
    # the conditions really differ, so the comparison can fail
    assert any(
        alone[0][i]["option_probs"] != pytest.approx(alone[1][i]["option_probs"], abs=1e-5)
        for i in range(len(examples))
    )


@pytest.mark.parametrize("family", ["gemma2", "gpt2", "phi3"])
def test_together_on_the_other_forward_paths(tokenizer, family):
    """gemma2 (eager/sliding window), gpt2 (fused c_attn, Conv1D) and phi3 (fused qkv/gate_up)."""
    model = tiny_model(family)
    examples = mcq_examples(7)
    sets = sets_for(model, seed=3)
    conditions = conditions_of(sets)
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    alone = one_at_a_time(model, tokenizer, examples, conditions, opts)
    with intervene_rows(model, conditions):
        together = evaluate_examples(model, tokenizer, examples, opts, copies=len(conditions))
    assert_same_rows(alone, together, len(conditions))


@pytest.mark.parametrize("path", ["prefix", "rows"])
def test_together_without_packing(tokenizer, monkeypatch, path):
    """The KV-cache prefix path and the per-row padded path announce their rows too."""
    import culture_neurons.likelihood.logprobs as logprobs

    monkeypatch.setattr(logprobs, "packs", lambda *_: False)
    if path == "rows":
        monkeypatch.setattr(logprobs, "supports_shared_prefix", lambda *_: False)
    model = tiny_model("llama")
    examples = mcq_examples(6)
    conditions = conditions_of(sets_for(model, seed=1))
    opts = EvalOptions(scorer="loglik", batch_size=5, chat_template=False)
    alone = one_at_a_time(model, tokenizer, examples, conditions, opts)
    with intervene_rows(model, conditions):
        together = evaluate_examples(model, tokenizer, examples, opts, copies=len(conditions))
    assert_same_rows(alone, together, len(conditions))


def test_ablation_rows_equal_with_and_without_batching(tokenizer):
    model = tiny_model("llama")
    benches = {"a": mcq_examples(8), "b": mcq_examples(5)}
    like = sets_for(model)[0]
    common = dict(random=RandomBaseline(seeds=3), n_boot=50)
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    together = run_ablation(model, tokenizer, benches, like, options=opts, **common)
    alone = run_ablation(
        model, tokenizer, benches, like, options=dataclasses.replace(opts, batch_conditions=False), **common
    )
    cols = ["condition", "benchmark", "id", "prediction", "correct", "correct_norm", "score"]
    pd.testing.assert_frame_equal(together.rows[cols], alone.rows[cols])
    for got, ref in zip(together.rows["option_probs"], alone.rows["option_probs"]):
        assert list(got) == pytest.approx(list(ref), abs=1e-5)
    assert together.rows["condition"].nunique() == 5


def test_cross_culture_together_matches(tokenizer):
    model = tiny_model("llama")
    sets = sets_for(model, seed=4)
    specific = dict(zip(("Japan", "Mexico", "Spain"), sets))
    opts = EvalOptions(scorer="choice", batch_size=4, chat_template=False)
    args = (model, tokenizer, {"m": mcq_examples(9)}, specific)
    together = run_cross_culture(*args, options=opts, n_boot=20)
    alone = run_cross_culture(*args, options=dataclasses.replace(opts, batch_conditions=False), n_boot=20)
    pd.testing.assert_frame_equal(together.matrix, alone.matrix)


def test_evaluate_together_labels_and_order(tokenizer):
    model = tiny_model("llama")
    examples = mcq_examples(4)
    sets = sets_for(model)
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    got = evaluate_together(
        model, tokenizer, "m", examples, [("original", RowCondition(None)), ("x", RowCondition(sets[0]))], opts
    )
    ref = evaluate_rows(model, tokenizer, {"m": examples}, sets[0], condition="x", options=opts)
    assert list(got) == ["original", "x"]
    assert list(got["x"].columns) == list(ref.columns)
    assert got["x"]["id"].tolist() == ref["id"].tolist()
    with pytest.raises(InputError, match="share a name"):
        evaluate_together(model, tokenizer, "m", examples, [("x", RowCondition(None))] * 2, opts)


def test_an_unannounced_forward_fails_instead_of_guessing():
    model = tiny_model("llama")
    sets = sets_for(model)
    ids = torch.tensor([[1, 2, 3]])
    with intervene_rows(model, [RowCondition(None), RowCondition(sets[0])]):
        with pytest.raises(ScoringError, match="did not announce"):
            model(input_ids=ids)


def test_bad_conditions_are_refused():
    model = tiny_model("llama")
    sets = sets_for(model)
    with pytest.raises(InputError, match="at least one condition"):
        with intervene_rows(model, []):
            pass
    with pytest.raises(InputError, match="unknown intervention op"):
        with intervene_rows(model, [RowCondition(sets[0], "zap")]):
            pass
    with pytest.raises(InputError, match="needs the channel means"):
        with intervene_rows(model, [RowCondition(sets[0], "mean")]):
            pass


def test_hooks_are_removed_and_the_model_is_unchanged(tokenizer):
    model = tiny_model("llama")
    examples = mcq_examples(3)
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    before = evaluate_examples(model, tokenizer, examples, opts)
    with pytest.raises(RuntimeError):
        with intervene_rows(model, conditions_of(sets_for(model))):
            raise RuntimeError("boom")
    after = evaluate_examples(model, tokenizer, examples, opts)
    assert [r["option_probs"] for r in before] == [r["option_probs"] for r in after]


def test_pipeline_rows_equal_with_and_without_batching_and_the_flag_keeps_steps_fresh(tmp_path, monkeypatch):
    from culture_neurons.pipeline.run import run_pipeline
    from culture_neurons.pipeline.stages import evaluate as stage
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    monkeypatch.setattr(stage, "CONDITIONS_PER_PASS", 3)  # several passes per benchmark, the last one short
    model_dir = save_tiny_model(tmp_path / "model")
    runs = {}
    for batched in (True, False):
        out = tmp_path / f"run-{batched}"
        config = tiny_run_config(
            model_dir, out, evaluate={"batch_conditions": batched, "experiments": ["ablation", "cross-culture"]}
        )
        config.pop("report", None)
        run_pipeline(config, progress=False)
        runs[batched] = out
    files = sorted(p.relative_to(runs[True]) for p in (runs[True] / "eval" / "conditions").rglob("*.parquet"))
    assert len(files) >= 5  # original, general, 2 random sets, the countries
    for rel in files:
        got, ref = pd.read_parquet(runs[True] / rel), pd.read_parquet(runs[False] / rel)
        cols = ["condition", "benchmark", "id", "prediction", "correct", "score"]
        pd.testing.assert_frame_equal(got[cols], ref[cols])
        for a, b in zip(got["option_probs"], ref["option_probs"]):
            assert list(a) == pytest.approx(list(b), abs=1e-5)
    # switching the flag changes how, not what: every evaluate step stays up to date
    config = tiny_run_config(
        model_dir, runs[True], evaluate={"batch_conditions": False, "experiments": ["ablation", "cross-culture"]}
    )
    config.pop("report", None)
    plan = run_pipeline(config, progress=False, dry_run=True)
    assert {s.status for s in plan.steps if s.key.startswith("evaluate:")} == {"up to date"}


def test_a_pass_is_written_when_it_ends_so_a_kill_loses_one_pass_at_most(tmp_path, monkeypatch):
    from culture_neurons.pipeline.run import run_pipeline
    from culture_neurons.pipeline.stages import evaluate as stage
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    monkeypatch.setattr(stage, "CONDITIONS_PER_PASS", 2)
    real, calls = stage.evaluate_together, []

    def dies_on_the_second_pass(*args, **kwargs):
        calls.append(len(args[4]))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a kill between two passes leaves behind
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "evaluate_together", dies_on_the_second_pass)
    out = tmp_path / "run"
    config = tiny_run_config(save_tiny_model(tmp_path / "model"), out, evaluate={"experiments": ["ablation"]})
    config.pop("report", None)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, progress=False)
    assert calls == [2, 2]
    written = sorted((out / "eval" / "conditions").rglob("*.parquet"))
    assert len(written) == 2  # the first pass's two conditions, on disk before the kill
    monkeypatch.setattr(stage, "evaluate_together", real)
    result = run_pipeline(config, progress=False)
    statuses = {s.key: s.status for s in result.steps if s.key.startswith("evaluate:")}
    assert sum(v == "skipped" for v in statuses.values()) == 2 and "ran" in statuses.values(), statuses


def test_country_random_sets_see_their_own_country_only(tokenizer):
    """Cross-culture's random sets run on their country's questions alone, and the ``vs_random`` block is what a
    plan that evaluates them on every question gives (the slow reference: ``Condition.countries`` cleared)."""
    from culture_neurons.evaluation import plan as planner
    from culture_neurons.evaluation.country_random import country_random_sets
    from culture_neurons.evaluation.experiments import evaluate_conditions, summarise_experiment

    model = tiny_model("llama")
    specific = dict(zip(("Japan", "Mexico", "Spain"), sets_for(model, seed=4)))
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    benches = {"m": mcq_examples(9)}
    result = run_cross_culture(
        model, tokenizer, benches, specific, options=opts, n_boot=20, cross=_cross(random_sets=2)
    )
    drawn = result.rows[result.rows["condition"].str.startswith("suppress:random:")]
    for label, group in drawn.groupby("condition"):
        country = label.split(":")[2]
        assert set(group["country"]) == {country} and len(group) == 3  # 3 of the 9 questions are each country's
    randoms = [(c, country_random_sets(c, ns, 2)) for c, ns in specific.items()]
    conditions, experiment = planner.cross_culture(list(specific.items()), ["m"], "suppress", randoms)
    wide = [dataclasses.replace(c, countries=None) for c in conditions]
    rows = evaluate_conditions(model, tokenizer, benches, wide, 2.0, opts)
    assert len(rows) == 9 * len(wide)
    reference, _ = summarise_experiment(rows, experiment, 20, 0)
    assert result.summary["vs_random"] == reference["vs_random"]  # 0/1 scores: equal, not close


def _cross(**kw):
    from culture_neurons.evaluation.cross_options import CrossCultureOptions

    return CrossCultureOptions(**kw)


def test_narrowed_ablation_compares_each_benchmark_with_the_sets_it_saw(tokenizer):
    """``plan.ablation(narrow=(k, benchmarks))``: later random sets skip the other benchmarks, and each benchmark's
    summary ranks the target among the random sets evaluated on it, equal to an ablation with only those sets."""
    from culture_neurons.evaluation import plan as planner
    from culture_neurons.evaluation.experiments import ablation_summary, evaluate_conditions

    model = tiny_model("llama")
    like = sets_for(model)[0]
    randoms = [(f"random:{s}", select_random(like, s)) for s in range(3)]
    benches = {"culture": mcq_examples(6), "nlu": mcq_examples(4)}
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    conds, exp = planner.ablation(("general", like), randoms, list(benches), narrow=(1, ["culture"]))
    assert {c.label: c.benchmarks for c in conds}["suppress:random:2"] == ("culture",)
    assert {c.label: c.benchmarks for c in conds}["suppress:random:0"] == ("culture", "nlu")
    rows = evaluate_conditions(model, tokenizer, benches, conds, 2.0, opts)
    summary = ablation_summary(rows, list(benches), exp.target, list(exp.compared), 50, 0)
    assert summary["culture"]["all"]["m_random"] == 3 and summary["nlu"]["all"]["m_random"] == 1
    few = rows[rows["benchmark"] == "nlu"]
    alone = ablation_summary(few, ["nlu"], exp.target, ["suppress:random:0"], 50, 0)
    assert summary["nlu"] == alone["nlu"]


def test_score_follows_the_benchmark_s_metric(tokenizer):
    """Under ``loglik`` the ``score`` of an ``acc_norm`` benchmark (OpenBookQA, ARC) is ``correct_norm``, of an ``acc``
    one (PIQA, a user's own file) ``correct``: what lm-eval reports for each."""
    model = tiny_model("llama")
    opts = EvalOptions(scorer="loglik", batch_size=4, chat_template=False)
    for dataset, column in (("openbookqa", "correct_norm"), ("arc-easy", "correct_norm"), ("piqa", "correct")):
        exs = [dataclasses.replace(e, dataset=dataset) for e in mcq_examples(9)]
        rows = evaluate_examples(model, tokenizer, exs, opts)
        assert [r["score"] for r in rows] == [float(r[column]) for r in rows], dataset
    exs = [dataclasses.replace(e, dataset="my-own-file") for e in mcq_examples(9)]
    rows = evaluate_examples(model, tokenizer, exs, opts)
    assert [r["score"] for r in rows] == [float(r["correct"]) for r in rows]
    assert any(r["correct"] != r["correct_norm"] for r in rows)  # the two differ somewhere: the check can fail
