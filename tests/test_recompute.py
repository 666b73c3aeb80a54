"""``ScoringOptions(recompute=True)``: every decoder layer runs again in the backward pass instead of
keeping its activations. The scores must be those of the default engine, in every family and target."""

from __future__ import annotations

import pytest
import torch

from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions
from culture_neurons.errors import ScoringError
from culture_neurons.models.adapters import get_adapter
from tests.test_choice_sharing import items
from tests.test_cli_score import model_dir, records, run, write_jsonl  # noqa: F401 (model_dir is a fixture)
from tests.tiny import FAMILIES, make_examples, tiny_model


def score(model, tokenizer, examples, **options):
    return ScoringEngine(model, tokenizer, ScoringOptions(batch_size=3, **options)).score(examples, progress=False)


def assert_equal_tables(a, b) -> None:
    assert torch.equal(a.counts, b.counts) and torch.allclose(a.prob_sums, b.prob_sums, rtol=1e-6)
    for site in a.sites:
        assert torch.allclose(a.scores[site], b.scores[site], rtol=1e-5, atol=1e-7), site


@pytest.mark.parametrize("family", FAMILIES)
def test_recompute_gives_the_default_scores_in_every_family(tokenizer, family):
    model = tiny_model(family)
    for target, examples in (("label", make_examples(7)), ("answer", make_examples(5)), ("choice", items(5))):
        assert_equal_tables(
            score(model, tokenizer, examples, target=target),
            score(model, tokenizer, examples, target=target, recompute=True),
        )


@pytest.mark.parametrize("aggregation", ["max", "sum", "last"])
def test_recompute_with_every_aggregation_and_the_control_clamp(tokenizer, llama, aggregation):
    for control in (False, True):
        opts = dict(aggregation=aggregation, control=control)
        assert_equal_tables(
            score(llama, tokenizer, make_examples(6), **opts),
            score(llama, tokenizer, make_examples(6), recompute=True, **opts),
        )


def test_every_layer_runs_twice_per_batch_and_is_restored(tokenizer, llama):
    """The recomputation really happens (one forward and one backward run of each layer per batch), and
    the layers are left as they were, also after a failed call."""
    layers = llama.get_submodule(get_adapter(llama).layers_path)
    runs = [0] * len(layers)
    # counted on each layer's MLP: the recomputation calls the layer's forward itself, its modules as modules
    handles = [
        layer.mlp.register_forward_pre_hook(lambda *_a, i=i: runs.__setitem__(i, runs[i] + 1))
        for i, layer in enumerate(layers)
    ]
    try:
        score(llama, tokenizer, make_examples(6), recompute=True)  # 2 batches of 3
        assert runs == [4] * len(layers)
        runs[:] = [0] * len(layers)
        score(llama, tokenizer, make_examples(6))
        assert runs == [2] * len(layers)
    finally:
        for h in handles:
            h.remove()
    assert all("forward" not in layer.__dict__ for layer in layers)
    with pytest.raises(ScoringError):
        score(llama, tokenizer, [], recompute=True)
    assert all("forward" not in layer.__dict__ for layer in layers)


def test_recompute_refuses_the_cache_path(tokenizer, llama):
    with pytest.raises(ScoringError, match="KV cache"):
        ScoringEngine(llama, tokenizer, ScoringOptions(target="choice", recompute=True), share_prompt="cache")


def test_recompute_does_not_change_what_a_table_is(tokenizer, llama):
    """Switching it keeps checkpoints and pipeline steps valid: it is not part of the options' identity."""
    assert ScoringOptions(recompute=True).identity() == ScoringOptions().identity()
    assert "recompute" not in ScoringOptions().identity()


def test_cli_recompute_flag_writes_the_same_table(model_dir, tmp_path):  # noqa: F811
    from culture_neurons import ScoreTable

    examples = write_jsonl(tmp_path / "e.jsonl", records())
    for name, extra in (("a", []), ("b", ["--recompute"])):
        result = run("score", "-m", model_dir, "-e", examples, "-o", tmp_path / f"{name}.safetensors", "-q", *extra)
        assert result.exit_code == 0, result.output
    a, b = (ScoreTable.load(tmp_path / f"{n}.safetensors") for n in "ab")
    assert b.meta["options"]["recompute"] is True
    assert_equal_tables(a, b)
