"""lm-evaluation-harness on intervened models, offline: a tiny random model and an exported local task.

The oracles: a plain forward pass (log-likelihood of each option, computed here by hand) for lm-eval's
numbers, and lm-eval's own acc / acc_norm for our ``loglik`` scorer, with and without an intervention.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.tiny import build_tokenizer, tiny_model

lm_eval = pytest.importorskip("lm_eval")

from culture_neurons.data.lm_eval_export import export_lm_eval  # noqa: E402
from culture_neurons.data.registry import build_examples  # noqa: E402
from culture_neurons.data.sampling import cap_examples  # noqa: E402
from culture_neurons.errors import InputError  # noqa: E402
from culture_neurons.evaluation.scorers import EvalOptions, evaluate_examples  # noqa: E402
from culture_neurons.integrations.lm_eval_model import CultureNeuronsLM  # noqa: E402
from culture_neurons.intervention import channel_means, intervene, save_means  # noqa: E402
from culture_neurons.selection.neuronset import NeuronSet  # noqa: E402

BENCH, SPLIT, CAP = "demo-culture", "heldout", 2


def half_the_gates(model) -> NeuronSet:
    """Every other gate channel in both layers: a big enough change that some answers flip."""
    from culture_neurons.models.adapters import get_adapter

    adapter = get_adapter(model)
    width = adapter.widths["mlp.gate"]
    idx = list(range(0, width, 2))
    return NeuronSet.from_columns(
        ["mlp.gate"] * 2 * len(idx),
        [0] * len(idx) + [1] * len(idx),
        idx * 2,
        kind="test",
        num_layers=adapter.num_layers,
        widths=adapter.widths,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_eval")
    done = export_lm_eval(BENCH, folder / "tasks", split=SPLIT, max_per_group=CAP)
    model, tok = tiny_model("llama"), build_tokenizer()
    neurons = half_the_gates(model)
    neurons.save(folder / "gates.json")
    examples = cap_examples(build_examples(BENCH, split=SPLIT, templates="cloze"), max_per_group=CAP)
    from lm_eval.tasks import TaskManager

    # Only our folder: indexing lm-eval's thousands of built-in task files is most of a run's time.
    manager = TaskManager(include_path=str(done.folder), include_defaults=False)
    return {
        "folder": folder,
        "task": done.task,
        "tasks_dir": done.folder,
        "model": model,
        "tok": tok,
        "neurons": neurons,
        "examples": examples,
        "manager": manager,
    }


def run_lm_eval(lm, setup) -> list[dict]:
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[setup["task"]], task_manager=setup["manager"], log_samples=True, verbosity="ERROR"
    )
    return sorted(out["samples"][setup["task"]], key=lambda s: s["doc"]["id"])


@pytest.fixture(scope="module")
def runs(setup):
    """lm-eval samples and our scorer's rows for the baseline and each intervention."""
    model, tok, neurons = setup["model"], setup["tok"], setup["neurons"]
    means = channel_means(model, tok, setup["examples"], neurons)
    out = {}
    for name, kwargs in {
        "base": {},
        "suppress": {"neurons": neurons},
        "enhance": {"neurons": neurons, "op": "enhance", "factor": 3},
        "mean": {"neurons": neurons, "op": "mean", "means": means},
    }.items():
        samples = run_lm_eval(CultureNeuronsLM(model, tok, batch_size=4, **kwargs), setup)
        opts = EvalOptions(scorer="loglik", chat_template=False, batch_size=3)
        if kwargs:
            with intervene(
                model, neurons, kwargs.get("op", "suppress"), kwargs.get("factor", 2.0), means=kwargs.get("means")
            ):
                rows = evaluate_examples(model, tok, setup["examples"], opts)
        else:
            rows = evaluate_examples(model, tok, setup["examples"], opts)
        out[name] = (samples, sorted(rows, key=lambda r: r["id"]))
    return out


def oracle_logliks(model, tok, prompt: str, choices: list[str]) -> list[float]:
    """Sum of log p(option tokens | prompt) from one plain forward pass per option."""
    ctx = tok(prompt)["input_ids"]
    out = []
    for choice in choices:
        full = tok(prompt + " " + choice)["input_ids"]
        assert full[: len(ctx)] == ctx
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([full])).logits[0].float().log_softmax(-1)
        out.append(sum(float(logp[p - 1, full[p]]) for p in range(len(ctx), len(full))))
    return out


def test_export_writes_a_task_lm_eval_loads(setup):
    assert setup["task"] in setup["manager"].all_tasks
    meta = json.loads((setup["tasks_dir"] / f"{setup['task']}.export.json").read_text())
    assert meta["n_docs"] == len(setup["examples"]) == 16 and meta["templates"] == ["cloze"]
    docs = [json.loads(line) for line in (setup["tasks_dir"] / f"{setup['task']}.jsonl").read_text().splitlines()]
    assert [d["id"] for d in docs] == [ex.id for ex in setup["examples"]]
    assert all(
        d["choices"][d["gold"]] in ex.options and d["prompt"] == ex.prompt for d, ex in zip(docs, setup["examples"])
    )


def test_plugin_resolves_by_name():
    from importlib.metadata import entry_points

    from lm_eval.api.registry import get_model

    from culture_neurons.integrations.lm_eval_cli import register_entry_point_models

    names = {ep.name: ep.value for ep in entry_points(group="lm_eval.models")}
    assert names.get("culture-neurons") == "culture_neurons.integrations.lm_eval_model:CultureNeuronsLM"
    register_entry_point_models()
    assert get_model("culture-neurons") is CultureNeuronsLM


@pytest.mark.parametrize("condition", ["base", "suppress", "enhance", "mean"])
def test_lm_eval_logliks_equal_a_plain_forward_under_the_intervention(setup, runs, condition):
    model, tok, neurons = setup["model"], setup["tok"], setup["neurons"]
    samples, _ = runs[condition]
    ctx = contextlib_for(condition, model, neurons, setup)
    with ctx:
        for s in samples[:4]:
            want = oracle_logliks(model, tok, s["doc"]["prompt"], s["doc"]["choices"])
            got = [float(r[0]) for r in s["filtered_resps"]]
            assert got == pytest.approx(want, abs=1e-3), (condition, s["doc"]["id"])


def contextlib_for(condition, model, neurons, setup):
    import contextlib

    if condition == "base":
        return contextlib.nullcontext()
    if condition == "mean":
        return intervene(model, neurons, "mean", means=channel_means(model, setup["tok"], setup["examples"], neurons))
    return intervene(model, neurons, condition, 3.0 if condition == "enhance" else 2.0)


@pytest.mark.parametrize("condition", ["base", "suppress", "enhance", "mean"])
def test_our_loglik_scorer_equals_lm_eval_acc_and_acc_norm(runs, condition):
    samples, rows = runs[condition]
    assert [s["doc"]["id"] for s in samples] == [r["id"] for r in rows]
    assert [bool(s["acc"]) for s in samples] == [bool(r["correct"]) for r in rows]
    assert [bool(s["acc_norm"]) for s in samples] == [bool(r["correct_norm"]) for r in rows]


def test_the_intervention_changes_lm_eval_as_it_changes_ours(runs):
    def logliks(condition):
        return [float(r[0]) for s in runs[condition][0] for r in s["filtered_resps"]]

    base = logliks("base")
    for condition in ("suppress", "enhance", "mean"):
        changed = logliks(condition)
        assert changed != pytest.approx(base, abs=1e-3), condition  # the hooks really ran inside lm-eval
        ours_flipped = [a["correct"] != b["correct"] for a, b in zip(runs["base"][1], runs[condition][1])]
        theirs_flipped = [a["acc"] != b["acc"] for a, b in zip(runs["base"][0], runs[condition][0])]
        assert ours_flipped == theirs_flipped


def test_means_file_beside_the_set_and_bad_arguments(setup, tmp_path):
    model, tok, neurons = setup["model"], setup["tok"], setup["neurons"]
    path = neurons.save(tmp_path / "gates.json")
    save_means(channel_means(model, tok, setup["examples"], neurons), tmp_path / "gates.means.safetensors", model=model)
    lm = CultureNeuronsLM(
        model, tok, neurons=f"{path}+{path}", op="mean"
    )  # '+' joins sets; means found beside the first
    assert lm.means is not None and lm.intervention_info()["n_neurons"] == len(neurons)
    with pytest.raises(InputError, match=r"op=.zero.: op takes suppress \| enhance \| mean"):
        CultureNeuronsLM(model, tok, neurons=str(path), op="zero")
    with pytest.raises(InputError, match="does not exist"):
        CultureNeuronsLM(model, tok, neurons=str(tmp_path / "missing.json"))
    wrong = NeuronSet.from_columns(["mlp.gate"], [5], [0], num_layers=6, widths={"mlp.gate": 96})
    with pytest.raises(InputError):
        CultureNeuronsLM(model, tok, neurons=wrong)
    info = CultureNeuronsLM(model, tok, neurons=neurons, op="enhance", factor="2.5").get_model_info()
    assert info["culture_neurons"]["op"] == "enhance" and info["culture_neurons"]["factor"] == 2.5
    json.dumps(info)  # lm-eval writes it into results.json


def test_model_args_win_over_lm_eval_flags(monkeypatch):
    """``--model_args device=cpu`` with lm-eval's own ``--device`` must not fail with "multiple values"."""
    seen = {}
    monkeypatch.setattr(CultureNeuronsLM, "__init__", lambda self, **kw: seen.update(kw))
    CultureNeuronsLM.create_from_arg_string(
        "pretrained=m,device=cpu,op=enhance,factor=3", {"device": "cuda", "batch_size": 4, "max_batch_size": None}
    )
    assert seen == {"pretrained": "m", "device": "cpu", "op": "enhance", "factor": 3, "batch_size": 4}


@pytest.mark.integration
@pytest.mark.slow  # one lm-eval CLI start indexes all of lm-eval's built-in tasks: a minute or more on 2 cores
def test_lm_eval_cli_runs_the_plugin_offline(setup, runs, tmp_path):
    import os

    model_dir = tmp_path / "model"
    setup["model"].save_pretrained(model_dir)
    setup["tok"].save_pretrained(model_dir)
    set_path = setup["neurons"].save(tmp_path / "gates.json")
    for name, extra in {
        "suppress": f",neurons={set_path},op=suppress"
    }.items():  # one run: each indexes all lm-eval tasks
        out = tmp_path / name
        cmd = [
            sys.executable,
            "-m",
            "culture_neurons.integrations.lm_eval_cli",
            "--model",
            "culture-neurons",
            "--model_args",
            f"pretrained={model_dir},device=cpu,dtype=float32{extra}",
            "--include_path",
            str(setup["tasks_dir"]),
            "--tasks",
            setup["task"],
            "--limit",
            "8",
            "--batch_size",
            "4",
            "--output_path",
            str(out),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        files = list(out.rglob("results_*.json"))
        assert len(files) == 1, files
        result = json.loads(files[0].read_text())
        first8 = [s for s in runs[name][0] if s["doc_id"] < 8]
        want = sum(float(s["acc"]) for s in first8) / 8
        assert result["results"][setup["task"]]["acc,none"] == pytest.approx(want)
        info = result["config"]["culture_neurons"]
        assert info["n_neurons"] == (0 if name == "base" else len(setup["neurons"]))
        assert info["model"]["source"] == "local"


def test_generation_runs_under_the_intervention(setup):
    """lm-eval's generate_until path: the intervened model generates what ``intervene`` + generate gives."""
    model, tok, neurons = setup["model"], setup["tok"], setup["neurons"]
    context = torch.tensor([tok("Which country is known for sushi? Answer:")["input_ids"]])
    kwargs = {"max_length": context.shape[1] + 8, "stop": ["\n\n"], "do_sample": False}
    plain = CultureNeuronsLM(model, tok)._model_generate(context, **kwargs)
    suppressed = CultureNeuronsLM(model, tok, neurons=neurons)._model_generate(context, **kwargs)
    with intervene(model, neurons):
        want = CultureNeuronsLM(model, tok)._model_generate(context, **kwargs)
    assert torch.equal(suppressed, want)
    assert not torch.equal(plain, suppressed)  # the hooks were on during generation
    assert torch.equal(plain, CultureNeuronsLM(model, tok)._model_generate(context, **kwargs))  # and removed after
