"""The NLU benchmarks against lm-evaluation-harness, item by item, on a tiny random model.

Two oracles, both run by lm-eval in one ``simple_evaluate`` call:

- the task ``culture-neurons data export-lm-eval`` writes (as tests/test_integrations_lm_eval.py
  does for the demo set): our ``loglik`` scorer's ``correct`` and ``correct_norm`` equal lm-eval's
  ``acc`` and ``acc_norm`` on every document;
- lm-eval's own task definitions (its shipped YAML for ``arc_easy``, ``piqa``, ``openbookqa``,
  ``hellaswag``, ``boolq``, with the tiny rows as their dataset in the hub's layout): the prompts,
  choices and gold indices are the same as ours, and so are the log-likelihoods and both accuracies.

WinoGrande has no such native check: lm-eval scores it differently on purpose (see docs/data.md),
and the last test pins down exactly how the two formulations differ.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.data.nlu_hub_rows import FILES, hub_rows
from tests.tiny import build_tokenizer, tiny_model

lm_eval = pytest.importorskip("lm_eval")

from culture_neurons.data.lm_eval_export import export_lm_eval  # noqa: E402
from culture_neurons.data.registry import build_examples  # noqa: E402
from culture_neurons.evaluation.scorers import EvalOptions, evaluate_examples  # noqa: E402
from culture_neurons.integrations.lm_eval_model import CultureNeuronsLM  # noqa: E402

EXPORTED = ("arc-easy", "piqa", "openbookqa", "arc-challenge", "hellaswag", "winogrande", "boolq")
# our benchmark -> lm-eval's task file, and the split its docs come from
NATIVE = {
    "arc-easy": ("arc/arc_easy.yaml", "test"),
    "piqa": ("piqa/piqa.yaml", "validation"),
    "openbookqa": ("openbookqa/openbookqa.yaml", "test"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation"),
    "boolq": ("super_glue/boolq/default.yaml", "validation"),
}


def lm_eval_tasks_dir() -> Path:
    return Path(os.path.dirname(lm_eval.__file__)) / "tasks"


def native_task(name: str):
    """lm-eval's own task for ``name``, its dataset replaced by the tiny rows in the hub's layout."""
    from datasets import Dataset, DatasetDict
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    path, split = NATIVE[name]
    config = load_yaml(lm_eval_tasks_dir() / path)
    config.pop("tag", None)
    rows = hub_rows(name)
    if name == "boolq":  # lm-eval reads SuperGLUE's copy: the answer as a 0/1 label
        rows = [{"question": r["question"], "passage": r["passage"], "label": int(r["answer"])} for r in rows]
    config["custom_dataset"] = lambda **_: DatasetDict({split: Dataset.from_list(rows)})
    config["task"] = f"native_{name.replace('-', '_')}"
    config.update({"training_split": None, "validation_split": None, "test_split": None, f"{split}_split": split})
    return ConfigurableTask(config=config)


@pytest.fixture(scope="module")
def lm_eval_run(tmp_path_factory):
    """One lm-eval run over every exported task and every native task, and our scorer's rows."""
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("nlu_tasks")
    exported = {name: export_lm_eval(name, folder, data_dir=FILES).task for name in EXPORTED}
    natives = {name: native_task(name) for name in NATIVE}
    model, tok = tiny_model("llama"), build_tokenizer()
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    out = lm_eval.simple_evaluate(
        model=CultureNeuronsLM(model, tok, batch_size=4),
        tasks=list(exported.values()) + list(natives.values()),
        task_manager=manager,
        log_samples=True,
        verbosity="ERROR",
    )
    opts = EvalOptions(scorer="loglik", chat_template=False, batch_size=3)
    ours = {}
    for name in EXPORTED:
        examples = build_examples(name, split="heldout", data_dir=FILES, templates="cloze")
        ours[name] = (examples, evaluate_examples(model, tok, examples, opts))
    samples = {name: out["samples"][task] for name, task in exported.items()}
    native = {name: sorted(out["samples"][t.config.task], key=lambda s: s["doc_id"]) for name, t in natives.items()}
    return {"exported": samples, "native": native, "tasks": natives, "ours": ours}


def logliks(sample) -> list[float]:
    return [float(r[0]) for r in sample["filtered_resps"]]


@pytest.mark.parametrize("name", EXPORTED)
def test_our_loglik_scorer_equals_lm_eval_on_the_exported_task(lm_eval_run, name):
    samples = sorted(lm_eval_run["exported"][name], key=lambda s: s["doc"]["id"])
    examples, rows = lm_eval_run["ours"][name]
    rows = sorted(rows, key=lambda r: r["id"])
    assert [s["doc"]["id"] for s in samples] == [r["id"] for r in rows] and len(rows) == len(examples) >= 2
    assert [bool(s["acc"]) for s in samples] == [bool(r["correct"]) for r in rows]
    assert [bool(s["acc_norm"]) for s in samples] == [bool(r["correct_norm"]) for r in rows]


@pytest.mark.parametrize("name", NATIVE)
def test_our_formulation_is_lm_evals_own_task(lm_eval_run, name):
    task = lm_eval_run["tasks"][name]
    native = lm_eval_run["native"][name]
    examples, rows = lm_eval_run["ours"][name]
    exported = {s["doc"]["id"]: s for s in lm_eval_run["exported"][name]}
    assert len(native) == len(examples)
    for sample, ex, row in zip(native, examples, rows):
        doc = sample["doc"]
        assert task.doc_to_text(doc) == ex.prompt
        assert list(task.doc_to_choice(doc)) == list(ex.options)
        assert task.doc_to_target(doc) == ex.labels.index(ex.answer)
        assert logliks(sample) == pytest.approx(logliks(exported[ex.id]), abs=1e-5)
        assert row["id"] == ex.id and bool(sample["acc"]) == row["correct"]
        if "acc_norm" in sample:  # lm-eval's BoolQ reports acc only
            assert bool(sample["acc_norm"]) == row["correct_norm"]


def test_winogrande_scores_the_whole_sentence_where_lm_eval_scores_its_end():
    """lm-eval: one prompt per option (the sentence up to the blank, filled in), one continuation (the
    rest). Ours: one prompt (up to the blank), each option plus the rest as its continuation. Both read
    the same sentence; ours also counts the option's own log-likelihood."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("wino", lm_eval_tasks_dir() / "winogrande/preprocess_winogrande.py")
    wino = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wino)
    for doc, ex in zip(hub_rows("winogrande"), build_examples("winogrande", data_dir=FILES, templates="cloze")):
        contexts, rest = wino.doc_to_choice(doc), wino.doc_to_target(doc)
        assert [f"{c} {rest}" for c in contexts] == [f"{ex.prompt} {o}" for o in ex.options]
        assert ex.labels.index(ex.answer) == wino.doc_to_text(doc)  # lm-eval's gold index
