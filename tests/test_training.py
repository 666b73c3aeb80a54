"""Selective fine-tuning on tiny random models: module groups, budgets, freezing, loss, LoRA, resume."""

from __future__ import annotations

import random

import pytest
import torch

from culture_neurons.data import Example
from culture_neurons.errors import InputError
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection.neuronset import NeuronSet
from culture_neurons.training import (
    Module,
    ModuleRanking,
    TrainConfig,
    answer_loss,
    choose_modules,
    encode_examples,
    finetune,
    lora_available,
    rank_modules,
    training_examples,
)
from culture_neurons.training.data import IGNORE
from culture_neurons.training.modules import derive_groups, list_modules, module_groups
from tests.tiny import FAMILIES, make_examples, tiny_model

FAST = dict(batch_size=4, micro_batch_size=2, save_steps=1000, logging_steps=1)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before, model):
    after = model.state_dict()
    assert set(after) == set(before)
    return {k for k in before if not torch.equal(before[k], after[k])}


def same(a, b):
    """Bit-identical on CPU; CUDA backward kernels are not deterministic, so there within float noise."""
    return torch.equal(a, b) if a.device.type == "cpu" else torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def owned(names, paths):
    return {n for n in names if n.startswith(tuple(p + "." for p in paths))}


def general_set(model, sites_layers, seed=0):
    """A synthetic culture-general set: (site, layer, count) triples of distinct channels."""
    adapter = get_adapter(model)
    sites, layers, indices = [], [], []
    for site, layer, count in sites_layers:
        for index in random.Random(seed).sample(range(adapter.sites[site].width), count):
            sites.append(site)
            layers.append(layer)
            indices.append(index)
    return NeuronSet.from_columns(
        sites, layers, indices, kind="general", num_layers=adapter.num_layers, widths=adapter.widths
    )


def keyword_examples(n=24):
    """A learnable task: the answer is fixed by a keyword in the prompt."""
    words = ["sushi", "tacos", "paella", "tea"]
    return [
        Example(id=f"k{i}", prompt=f"Which country eats {words[i % 4]}? Answer:", answer=" " + "ABCD"[i % 4], group="g")
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# module groups and ranking


@pytest.mark.parametrize("family", FAMILIES)
def test_module_groups_match_the_layer_projections(family):
    model = tiny_model(family)
    adapter = get_adapter(model)
    layers = model.get_submodule(adapter.layers_path)
    groups = module_groups(model, adapter)
    derived = derive_groups(adapter, layers[0])
    assert set(groups.mlp) == set(derived.mlp) and set(groups.attn) == set(derived.attn)
    modules = list_modules(model, adapter)
    assert [(m.layer, m.kind) for m in modules] == [(i, k) for i in range(adapter.num_layers) for k in ("mlp", "attn")]
    names = [n for n, _ in model.named_parameters()]
    seen = set()
    for m in modules:
        mine = owned(names, m.paths)
        assert mine and not (mine & seen)
        seen |= mine
        assert m.params == sum(model.get_parameter(n).numel() for n in mine)
    # every projection weight of a layer belongs to its MLP or attention module
    for i, layer in enumerate(layers):
        for sub, mod in layer.named_modules():
            if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D":
                assert f"{adapter.layers_path}.{i}.{sub}.weight" in seen


def test_rank_counts_neurons_per_module():
    model = tiny_model("llama")
    ns = general_set(
        model, [("mlp.gate", 1, 5), ("mlp.up", 1, 2), ("attn.q", 0, 3), ("attn.k", 0, 1), ("attn.v", 1, 1)]
    )
    ranking = rank_modules(model, ns)
    expect = {}
    for n in ns.neurons:
        key = f"{n.site.split('.')[0]}.{n.layer}"
        expect[key] = expect.get(key, 0) + 1
    got = {m.name: m.neurons for m in ranking.modules}
    assert got == {"mlp.0": 0, "mlp.1": 7, "attn.0": 4, "attn.1": 1}
    assert got == {**{m.name: 0 for m in ranking.modules}, **expect}
    assert [m.name for m in ranking.modules] == ["mlp.1", "attn.0", "attn.1", "mlp.0"]
    assert ranking.by_name()["mlp.1"].site_counts == {"mlp.gate": 5, "mlp.up": 2}
    frame = ranking.to_frame()
    assert list(frame["neurons"]) == [7, 4, 1, 0] and frame["params"].sum() < ranking.total_params
    assert "mlp.1" in ranking.table()


def test_rank_refuses_a_set_from_another_model():
    small = tiny_model("llama")
    ns = NeuronSet.from_columns(["mlp.gate"], [5], [0], kind="general", num_layers=6, widths={"mlp.gate": 96})
    with pytest.raises(InputError, match="different model"):
        rank_modules(small, ns)


# ---------------------------------------------------------------------------------------------
# budgets on a synthetic ranking


def synthetic_ranking():
    # name -> (neurons, params); total 1000 parameters
    spec = {
        "mlp.0": (9, 200),
        "attn.0": (7, 50),
        "mlp.1": (5, 200),
        "attn.1": (0, 50),
        "mlp.2": (0, 200),
        "attn.2": (3, 50),
        "mlp.3": (0, 200),
        "attn.3": (0, 50),
    }
    modules = [Module(int(n.split(".")[1]), n.split(".")[0], (f"m.{n}",), p, c) for n, (c, p) in spec.items()]
    modules.sort(key=lambda m: (-m.neurons, m.layer, m.kind != "mlp"))
    return ModuleRanking(modules, 1000, "synthetic", "general")


def oracle_fill(order, budget_params):
    chosen, used = [], 0
    for m in order:
        if used + m.params <= budget_params:
            chosen.append(m.name)
            used += m.params
    return chosen


def test_top_fills_the_budget_in_rank_order():
    ranking = synthetic_ranking()
    assert choose_modules(ranking, "top", 0.25).names == ("mlp.0", "attn.0")  # 250 of 250
    # mlp.1 (200) no longer fits after 250 of 300; attn.2 (50) does
    top = choose_modules(ranking, "top", 0.30)
    assert top.names == ("mlp.0", "attn.0", "attn.2") and top.params == 300 and top.budget_params == 300
    # every module with neurons fits: the top set stops there, below the budget
    assert choose_modules(ranking, "top", 1.0).names == ("mlp.0", "attn.0", "mlp.1", "attn.2")


@pytest.mark.parametrize("budget", [0.05, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_bottom_and_random_follow_the_oracle(budget, seed):
    ranking = synthetic_ranking()
    zero = [m for m in ranking.modules if m.neurons == 0]
    random.Random(seed).shuffle(zero)
    bottom = choose_modules(ranking, "bottom", budget, seed)
    assert list(bottom.names) == oracle_fill(zero, int(budget * 1000))
    assert all(ranking.by_name()[n].neurons == 0 for n in bottom.names) and bottom.params <= budget * 1000
    order = list(ranking.modules)
    random.Random(seed).shuffle(order)
    rand = choose_modules(ranking, "random", budget, seed)
    assert list(rand.names) == oracle_fill(order, int(budget * 1000)) and rand.params <= budget * 1000
    assert choose_modules(ranking, "random", budget, seed) == rand  # same seed, same set


def test_full_and_explicit_sets():
    ranking = synthetic_ranking()
    full = choose_modules(ranking, "full")
    assert full.full and full.params == 1000
    custom = choose_modules(ranking, "attn.3, mlp.0,mlp.0")
    assert custom.names == ("mlp.0", "attn.3") and custom.params == 250 and custom.budget_params is None


@pytest.mark.parametrize(
    "which, budget, message",
    [
        ("", 0.1, "module set is empty"),
        (" , ", 0.1, "module set is empty"),
        ([], 0.1, "module set is empty"),
        ("top", 0, r"budget must be .* in \(0, 1\], got 0"),
        ("random", -0.1, r"budget must be"),
        ("bottom", 1.5, r"budget must be"),
        (
            "top",
            0.01,
            r"top set is empty: a budget of 0.01 \(10 of 1,000 parameters\) is smaller than "
            r"the smallest candidate module \(attn.0, 50",
        ),
        ("mlp.9,attn.0", 0.1, "unknown module.*mlp.9"),
    ],
)
def test_bad_module_sets_are_refused(which, budget, message):
    with pytest.raises(InputError, match=message):
        choose_modules(synthetic_ranking(), which, budget)


def test_top_of_an_empty_set_and_bottom_of_a_full_one_are_refused():
    model = tiny_model("llama")
    empty = NeuronSet.from_columns([], [], [], kind="general")
    with pytest.raises(InputError, match="no module holds a neuron"):
        choose_modules(rank_modules(model, empty), "top")
    everywhere = general_set(model, [("mlp.gate", 0, 1), ("mlp.gate", 1, 1), ("attn.q", 0, 1), ("attn.q", 1, 1)])
    with pytest.raises(InputError, match="every module holds a neuron"):
        choose_modules(rank_modules(model, everywhere), "bottom", 0.5)


# ---------------------------------------------------------------------------------------------
# data


def test_labels_cover_the_answer_tokens_only(tokenizer):
    examples = make_examples(5)
    encoded = encode_examples(tokenizer, examples)
    from culture_neurons.attribution.batching import prompt_texts

    prompts, add_special = prompt_texts(tokenizer, examples, True)
    for ex, enc, prompt in zip(examples, encoded, prompts):
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        full_ids = tokenizer(prompt + ex.answer, add_special_tokens=add_special)["input_ids"]
        assert list(enc.input_ids) == full_ids
        assert list(enc.labels[: len(prompt_ids)]) == [IGNORE] * len(prompt_ids)
        assert list(enc.labels[len(prompt_ids) :]) == full_ids[len(prompt_ids) :] and enc.answer_tokens >= 1


def test_training_examples_from_names_and_files(tmp_path):
    demo = training_examples("demo-nlu", max_examples=10, seed=1)
    assert len(demo) == 10 and demo == training_examples("demo-nlu", max_examples=10, seed=1)
    assert len(training_examples("demo-nlu", max_examples=None)) == 104
    from culture_neurons.data import write_examples

    write_examples(tmp_path / "e.jsonl", make_examples(4))
    assert [e.id for e in training_examples(tmp_path / "e.jsonl")] == ["ex0", "ex1", "ex2", "ex3"]


@pytest.mark.parametrize(
    "data, message",
    [
        (
            "no-such-benchmark",
            r"unknown dataset 'no-such-benchmark': not an examples file and not a benchmark; "
            r"use an NLU benchmark \(.*qnli",
        ),
        ("missing/e.jsonl", "no such examples file"),
    ],
)
def test_unknown_training_data_is_refused(data, message):
    with pytest.raises(InputError, match=message):
        training_examples(data)


def test_qnli_train_part_missing_offline_is_clear(tmp_path):
    (tmp_path / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n0\tq?\ts.\tentailment\n")
    with pytest.raises(InputError, match="no train.tsv"):
        training_examples("qnli", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# training


@pytest.mark.parametrize("family, which", [("llama", "top"), ("llama", "bottom"), ("phi3", "top"), ("gpt2", "random")])
def test_only_the_chosen_modules_change(family, which, tmp_path, tokenizer):
    model = tiny_model(family)
    site_q = "attn.q"
    ns = general_set(model, [(next(s for s in get_adapter(model).sites if s.startswith("mlp.")), 1, 4), (site_q, 1, 2)])
    chosen = choose_modules(rank_modules(model, ns), which, 0.3, seed=3)
    before = snapshot(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    result = finetune(
        model,
        tokenizer,
        make_examples(8),
        chosen,
        tmp_path / "out",
        TrainConfig(learning_rate=1e-3, **FAST),
        progress=False,
    )
    names = [n for n, _ in model.named_parameters()]
    weights = {n for n in owned(names, chosen.paths) if n.endswith("weight")}
    diff = changed(before, model)
    assert diff <= owned(names, chosen.paths)  # nothing else moved, bit for bit (buffers included)
    assert weights <= diff  # every chosen weight was updated
    assert (
        result.trainable_params
        == chosen.params
        == sum(model.get_parameter(n).numel() for n in owned(names, chosen.paths))
    )
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags and not model.training
    # the folder is a normal model folder holding exactly the trained weights
    from culture_neurons.models.loading import load_model

    reloaded, tok = load_model(tmp_path / "out", device=str(next(model.parameters()).device))
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert tok.chat_template == tokenizer.chat_template
    assert not (tmp_path / "out" / "checkpoints").exists() and (tmp_path / "out" / "training.json").is_file()


def test_loss_decreases_on_a_learnable_task(tmp_path, tokenizer):
    model = tiny_model("llama")
    examples = keyword_examples()
    encoded = encode_examples(tokenizer, examples)
    before = answer_loss(model, tokenizer, encoded)
    ranking = rank_modules(model, general_set(model, [("mlp.gate", 1, 6), ("attn.q", 1, 2)]))
    config = TrainConfig(
        learning_rate=3e-3, epochs=6, batch_size=8, micro_batch_size=4, save_steps=1000, logging_steps=3
    )
    result = finetune(
        model, tokenizer, examples, choose_modules(ranking, "top", 0.3), tmp_path / "o", config, progress=False
    )
    after = answer_loss(model, tokenizer, encoded)
    assert after < 0.5 * before, (before, after)
    assert result.losses[-1]["loss"] < result.losses[0]["loss"] and result.steps == 18


def test_effective_batch_is_the_accumulated_batch(tmp_path, tokenizer):
    model = tiny_model("llama")
    chosen = choose_modules(rank_modules(model), "mlp.1")
    result = finetune(
        model,
        tokenizer,
        make_examples(20),
        chosen,
        tmp_path / "o",
        TrainConfig(batch_size=8, micro_batch_size=2, save_steps=1000),
        progress=False,
    )
    assert result.steps == 3  # ceil(20 / 8) optimizer steps of 4 accumulated micro-batches
    with pytest.raises(InputError, match="not a multiple of micro_batch_size"):
        TrainConfig(batch_size=10, micro_batch_size=4).validate()


def test_progress_in_a_log_file_is_our_lines_not_the_trainers_bar(tmp_path, tokenizer, capsys, monkeypatch):
    monkeypatch.setenv("CULTURE_NEURONS_PROGRESS_INTERVAL", "1e-9")  # a line on every step
    model = tiny_model("llama")
    chosen = choose_modules(rank_modules(model), "mlp.1")
    config = TrainConfig(batch_size=8, micro_batch_size=8, save_steps=1000)
    finetune(model, tokenizer, make_examples(24), chosen, tmp_path / "o", config, progress=True)
    err = capsys.readouterr().err  # captured: stderr is not a terminal
    assert "\r" not in err and "it/s]" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("training: ")]
    assert [line.split(",")[0] for line in lines] == [
        f"training: {i}/3 step ({p}%)" for i, p in ((1, 33), (2, 67), (3, 100))
    ]


def test_activation_checkpointing_gives_the_same_weights_and_is_turned_off(tmp_path, tokenizer):
    from transformers import TrainerCallback

    class Seen(TrainerCallback):
        def __init__(self):
            self.states: list[bool] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.states.append(model.is_activation_checkpointing)

    results = []
    for flag in (False, True):
        model = tiny_model("llama")
        chosen = choose_modules(rank_modules(model), "mlp.1,attn.0")
        seen = Seen()
        finetune(
            model,
            tokenizer,
            make_examples(8),
            chosen,
            tmp_path / str(flag),
            TrainConfig(learning_rate=1e-3, gradient_checkpointing=flag, **FAST),
            callbacks=[seen],
            progress=False,
        )
        assert seen.states and set(seen.states) == {flag}  # on during training exactly when asked for
        assert not model.is_activation_checkpointing and not model.training
        results.append(model.state_dict())
    plain, checkpointed = results
    assert all(torch.allclose(plain[k], checkpointed[k], rtol=1e-5, atol=1e-7) for k in plain)


class _Crash(Exception):
    pass


def _crash_after_first_save():
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise _Crash(f"killed after step {state.global_step}")

    return Crash()


def test_resume_after_a_crash_is_bit_identical(tmp_path, tokenizer):
    examples = make_examples(16)
    config = TrainConfig(learning_rate=1e-3, batch_size=4, micro_batch_size=2, save_steps=2, logging_steps=1)

    def fresh():
        model = tiny_model("llama")
        return model, choose_modules(rank_modules(model), "mlp.1,attn.0")

    ref, chosen = fresh()
    base = snapshot(ref)
    finetune(ref, tokenizer, examples, chosen, tmp_path / "ref", config, progress=False)
    assert changed(base, ref)
    model, chosen = fresh()
    with pytest.raises(_Crash):
        finetune(
            model,
            tokenizer,
            examples,
            chosen,
            tmp_path / "run",
            config,
            callbacks=[_crash_after_first_save()],
            progress=False,
        )
    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert (ckpt / "trainable.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    assert not (tmp_path / "run" / "training.json").exists()
    with pytest.raises(InputError, match="unfinished training run"):
        finetune(
            tiny_model("llama"), tokenizer, examples, chosen, tmp_path / "run", config, resume=False, progress=False
        )
    model, chosen = fresh()  # a new process: the base weights again
    result = finetune(model, tokenizer, examples, chosen, tmp_path / "run", config, progress=False)
    assert result.resumed_from.endswith("checkpoint-2") and result.steps == 4
    assert all(same(v, model.state_dict()[k]) for k, v in ref.state_dict().items())
    # a finished run is reused (weights loaded, not retrained); other settings are refused
    # (after a kill during the final clean-up: checkpoints and a temporary save folder are still there)
    (tmp_path / "run" / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "run" / ".model-x").mkdir()
    model, chosen = fresh()
    again = finetune(model, tokenizer, examples, chosen, tmp_path / "run", config, progress=False)
    assert again.skipped and all(torch.equal(v, model.state_dict()[k]) for k, v in ref.state_dict().items())
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / ".model-x").exists()
    with pytest.raises(InputError, match=r"other settings \(config.learning_rate differ"):
        finetune(
            tiny_model("llama"),
            tokenizer,
            examples,
            chosen,
            tmp_path / "run",
            TrainConfig(learning_rate=2e-3, **FAST),
            progress=False,
        )


@pytest.mark.skipif(not lora_available(), reason="peft not installed (pip install 'culture-neurons[lora]')")
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_touches_only_the_chosen_modules(family, tmp_path, tokenizer):
    import json

    model = tiny_model(family)
    ranking = rank_modules(model)
    chosen = choose_modules(ranking, "mlp.1,attn.0")
    lora_names, lora_sizes = [], []

    from transformers import TrainerCallback

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            for n, p in model.named_parameters():
                if p.requires_grad:
                    lora_names.append(n)
                    lora_sizes.append(p.numel())

    before = snapshot(model)
    config = TrainConfig(lora=True, learning_rate=1e-2, lora_r=4, **FAST)
    result = finetune(
        model, tokenizer, make_examples(8), chosen, tmp_path / "o", config, callbacks=[Spy()], progress=False
    )
    assert lora_names and all("lora_" in n for n in lora_names)
    assert all(any(p + "." in n for p in chosen.paths) for n in lora_names)  # adapters sit on the chosen modules only
    touched = {n.split(".lora_")[0].replace("base_model.model.", "", 1) for n in lora_names}
    assert touched == set(chosen.paths)
    names = [n for n, _ in model.named_parameters()]
    diff = changed(before, model)  # after merging
    assert diff and diff <= {n for n in owned(names, chosen.paths) if n.endswith("weight")}
    assert not any("lora_" in n for n in model.state_dict())  # merged and unloaded
    assert result.trainable_params == sum(lora_sizes) and result.adapter
    adapter = json.loads((tmp_path / "o" / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == set(chosen.paths)


def test_lora_without_peft_is_a_clear_error(monkeypatch, tmp_path, tokenizer):
    import culture_neurons.training.train as train_mod

    monkeypatch.setattr(train_mod, "lora_available", lambda: False)
    model = tiny_model("llama")
    with pytest.raises(InputError, match=r"LoRA needs the 'peft' package: pip install 'culture-neurons\[lora\]'"):
        finetune(
            model,
            tokenizer,
            make_examples(4),
            choose_modules(rank_modules(model), "mlp.0"),
            tmp_path / "o",
            TrainConfig(lora=True),
        )


def test_refuses_a_folder_with_a_foreign_model(tmp_path, tokenizer):
    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(InputError, match="already holds a model that culture-neurons train did not write"):
        finetune(
            model,
            tokenizer,
            make_examples(4),
            choose_modules(rank_modules(model), "mlp.0"),
            tmp_path / "m",
            TrainConfig(**FAST),
        )
