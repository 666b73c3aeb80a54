"""run_validity end to end on a tiny model, the exclusion filter as validity uses it, the readings, and the CLI."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from culture_neurons.attribution.engine import ScoringOptions
from culture_neurons.attribution.scoretable import ScoreTable
from culture_neurons.evaluation.scorers import EvalOptions
from culture_neurons.selection.neuronset import NeuronSet
from culture_neurons.validity import SelectionSettings, Study, ValidityData, ValidityOptions, run_validity
from culture_neurons.validity.folds import total
from culture_neurons.validity.readings import reading_faithfulness, reading_specificity, reading_stability
from tests.tiny import build_tokenizer, tiny_model
from tests.validity_helpers import choice_examples

SETTINGS = SelectionSettings(t_mlp=0.1, t_attn=0.05, r=0.05, specific_t=0.05, exclude_r=0.05)
OPTIONS = ValidityOptions(
    t_mlp_sweep=(0.05, 0.1),
    random_seeds=2,
    faith_top=4,
    faith_threshold=4,
    faith_random=4,
    faith_examples=4,
    additivity_k=(2, 4),
    enhance_factors=(0.0, 2.0),
    mean_examples=4,
    n_boot=50,
)


def _data() -> ValidityData:
    return ValidityData(
        identification=choice_examples(9),
        control=choice_examples(9, control=True, dataset="demo-control"),
        culture={"cult": choice_examples(6, templates=("cloze",), split="heldout", dataset="cult")},
        nlu={"nlu": choice_examples(6, groups=("nlu",), templates=("cloze",), split="heldout", dataset="nlu")},
        nlu_identification=choice_examples(6, groups=("nlu",), templates=("cloze",), dataset="nluid"),
        countryrc=choice_examples(6, templates=("cloze",), dataset="crc"),
    )


def _study(tmp_path, data=None, options=OPTIONS) -> Study:
    model, tok = tiny_model("llama", seed=5), build_tokenizer(chat_template=False)
    return Study(
        model,
        tok,
        data or _data(),
        tmp_path / "validity",
        settings=SETTINGS,
        options=options,
        scoring=ScoringOptions(target="choice", chat_template=False, batch_size=4),
        evaluation=EvalOptions(scorer="loglik", chat_template=False, batch_size=8),
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validity")
    study = _study(tmp)
    return study, run_validity(study)


def test_summary_has_every_section_with_a_headline_and_ci(finished):
    study, _ = finished
    on_disk = json.loads((study.out / "summary.json").read_text())
    assert on_disk["schema"] == "culture-neurons/validity"
    for key in ("sensitivity", "stability", "specificity", "faithfulness"):
        head = on_disk[key]["headline"]
        assert {"value", "ci_low", "ci_high"} <= head.keys(), key
        assert isinstance(on_disk[key]["reading"], str) and on_disk[key]["reading"]
        assert on_disk["readings"][key] == on_disk[key]["reading"]
    assert on_disk["chance"]["benchmarks"].keys() == {"cult", "nlu"}
    assert [r["t_mlp"] for r in on_disk["sensitivity"]["general"]] == [0.05, 0.1]


def test_faithfulness_csv_matches_the_sample(finished):
    study, summary = finished
    with open(study.out / "faithfulness.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {"site", "layer", "index", "score", "effect"} <= set(rows[0])
    assert len(rows) == summary["faithfulness"]["n_neurons"]
    keys = {(r["site"], r["layer"], r["index"]) for r in rows}
    assert len(keys) == len(rows)  # no neuron sampled twice


def test_fold_files_are_kept_and_sum_to_the_full_table(finished):
    study, _ = finished
    folder = study.out / "folds"
    cells = [ScoreTable.load(p) for p in sorted(folder.glob("fold*-*.safetensors"))]
    assert len(cells) == 4  # 2 folds x 2 templates
    full = total(cells)
    assert full.num_examples == len(study.data.identification)
    assert torch.allclose(full.scores["mlp.gate"], study.full_table.scores["mlp.gate"])
    for name in ("fold0", "fold1", "template-cloze", "template-alt"):
        assert NeuronSet.load(folder / f"{name}.json").kind == "general"
    with open(study.out / "stability.csv", encoding="utf-8") as fh:
        freq = list(csv.DictReader(fh))
    assert all(0 < float(r["frequency"]) <= 1 for r in freq)


def test_resume_reuses_cells_and_conditions(finished, tmp_path):
    study, summary = finished
    again = Study(
        study.model,
        study.tokenizer,
        study.data,
        study.out,
        settings=SETTINGS,
        options=OPTIONS,
        scoring=study.scoring,
        evaluation=study.evaluation,
    )
    second = run_validity(again)
    assert again.evaluator.evaluations == 0  # every condition came from validity/evals
    assert second["faithfulness"]["spearman"] == summary["faithfulness"]["spearman"]


def _oracle_excluded(default: NeuronSet, nlu: ScoreTable, r: float, pools) -> set:
    """List-based: per pool, rank every neuron by the NLU table's summed score (ties: site rank, layer,
    index) and drop the top r."""
    from culture_neurons.selection.neuronset import SITE_ORDER

    banned = set()
    for sites in pools:
        ranked = []
        for site in sites:
            score = nlu.scores[site].double().sum(-1)
            for layer in range(score.shape[0]):
                for index in range(score.shape[1]):
                    ranked.append((-float(score[layer, index]), SITE_ORDER.index(site), layer, index, site))
        ranked.sort()
        k = int(r * len(ranked) + 1e-9)
        banned |= {(site, layer, index) for _, _, layer, index, site in ranked[:k]}
    return {(n.site, n.layer, n.index) for n in default.neurons} - banned


def test_exclusion_filter_drops_the_nlu_top_as_a_list_oracle_does(tmp_path):
    study = _study(tmp_path)
    nlu = study.nlu_table
    default = study.default_set
    for r in (0.05, 0.2):
        excluded = study.general(exclude=[(nlu, r)])
        got = {(n.site, n.layer, n.index) for n in excluded.neurons}
        expected = _oracle_excluded(default, nlu, r, [SETTINGS.mlp_sites, SETTINGS.attn_sites])
        assert got == expected
    assert len(got) < len(default)  # r = 0.2 removes something: the check is not vacuous


def test_readings_follow_the_numbers():
    sig = {"headline": {"value": 8.1, "ci_low": 3.0, "ci_high": 13.2}, "nlu_informative": True}
    assert reading_specificity(sig).startswith("the cultural drop exceeds the NLU drop: gap +8.1 points [+3.0, +13.2]")
    null = {"headline": {"value": 2.0, "ci_low": -1.0, "ci_high": 5.0}, "nlu_informative": True}
    assert "do not differ significantly" in reading_specificity(null)
    assert "at chance" in reading_specificity({**sig, "nlu_informative": False})
    assert "well above chance" in reading_stability(
        {"headline": {"value": 0.4, "random_expected": 0.01, "random_ci_high": 0.02}}
    )
    assert "no more than random" in reading_stability(
        {"headline": {"value": 0.01, "random_expected": 0.01, "random_ci_high": 0.02}}
    )
    assert "does not significantly" in reading_faithfulness(
        {"headline": {"value": 0.1, "ci_low": -0.2, "ci_high": 0.4, "n": 30}}
    )


def test_bad_options_name_the_culprit():
    from culture_neurons.errors import InputError

    with pytest.raises(InputError, match="unknown validity analysis 'speed'"):
        ValidityOptions(analyses=("speed",)).validate()
    with pytest.raises(InputError, match="folds must be at least 2"):
        ValidityOptions(folds=1).validate()


@pytest.mark.integration
def test_cli_on_explicit_files(tmp_path):
    from click.testing import CliRunner

    from culture_neurons.cli import cli
    from culture_neurons.data.example import write_examples

    model, tok = tiny_model("llama", seed=5), build_tokenizer(chat_template=False)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = _data()
    write_examples(tmp_path / "ident.jsonl", data.identification)
    write_examples(tmp_path / "control.jsonl", data.control)
    write_examples(tmp_path / "cult.jsonl", data.culture["cult"])
    write_examples(tmp_path / "nlu.jsonl", data.nlu["nlu"])
    args = [
        "validate",
        "--model",
        str(tmp_path / "model"),
        "--out",
        str(tmp_path / "v"),
        "--identification",
        str(tmp_path / "ident.jsonl"),
        "--control-file",
        str(tmp_path / "control.jsonl"),
        "--culture-file",
        f"cult={tmp_path / 'cult.jsonl'}",
        "--nlu-file",
        f"nlu={tmp_path / 'nlu.jsonl'}",
        "--analyses",
        "stability,specificity",
        "--t-mlp",
        "0.1",
        "--t-attn",
        "0.05",
        "--random-seeds",
        "1",
        "--n-boot",
        "50",
        "-q",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert {"stability", "specificity"} <= summary.keys() and "faithfulness" not in summary
    assert "stability:" in result.output
    bad = CliRunner().invoke(
        cli,
        [
            "validate",
            "--model",
            str(tmp_path / "model"),
            "--out",
            str(tmp_path / "w"),
            "--identification",
            str(tmp_path / "missing.jsonl"),
            "--control-file",
            str(tmp_path / "control.jsonl"),
        ],
    )
    assert bad.exit_code != 0 and "missing.jsonl" in bad.output and "Traceback" not in bad.output
