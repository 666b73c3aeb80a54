"""The replication study's machinery: the ``replication`` preset, its planned work, the fine-tuning claim's numbers,
the run summary and the page written from summaries (docs/replication.md).

``python -m tests.test_replication`` rewrites the committed fixture (``tests/data/replication/tiny.json``, the
summary of a tiny run, and ``page.md``, the page the tool writes from it) after a deliberate change of either.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from culture_neurons.analysis.replication import load_summaries, render_replication, replication_figures
from culture_neurons.analysis.summary_export import SCHEMA, model_tag, run_summary
from culture_neurons.cli import cli
from culture_neurons.data.example import Example
from culture_neurons.pipeline import builtin_config, load_config, run_pipeline
from culture_neurons.pipeline.replication_command import replication_command
from culture_neurons.pipeline.study_size import eval_conditions, planned_lines, planned_work
from culture_neurons.training.sides import claim_input, side_changes
from tests.pipeline_helpers import save_tiny_model, tiny_run_config

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "replication"
SHARED = ROOT.parent / "shared" / "data"
RANK_ROWS = 3  # claims rows ranked against random sets in the preset: 2 cultural-drop, 1 pooled cross-culture

# A tiny run with every stage the study uses (ablation, cross-culture, train, validate), sized for seconds.
TINY = {
    "select": {"random": {"seeds": 3}},
    "evaluate": {"experiments": ["ablation", "cross-culture"], "nlu_random": 2},  # the preset's narrowed NLU side
    "train": {
        "budget": 0.3,
        "max_examples": 8,
        "batch_size": 4,
        "micro_batch_size": 2,
        "lr": 1e-3,
        "n_boot": 50,
        "save_steps": 1000,
    },
    "validate": {
        "analyses": ["sensitivity", "stability", "specificity", "faithfulness"],
        "t_mlp_sweep": [0.02, 0.05, 0.1],
        "specific_t_sweep": [0.05],
        "specific_z_sweep": [0.0],
        "random_seeds": 2,
        "folds": 2,
        "faith_top": 4,
        "faith_threshold": 4,
        "faith_random": 4,
        "faith_examples": 4,
        "additivity_k": [2],
        "n_boot": 50,
        "max_rows": 64,
    },
}


def tiny_study(root: Path) -> Path:
    """Run the tiny study in ``root/run`` (the model in ``root/tiny-llama``) and return the run directory."""
    model = save_tiny_model(root / "tiny-llama")
    out = root / "run"
    run_pipeline(tiny_run_config(model, out, **TINY), progress=False)
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return tiny_study(tmp_path_factory.mktemp("replication"))


def preset(data_dir: Path | None = None, **overrides):
    """The preset with a model and a data folder that exists (the check wants one), or none."""
    return load_config(
        builtin_config("replication"),
        {"model.name": "some/Model-X", "data.data_dir": None if data_dir is None else str(data_dir), **overrides},
    )


# --------------------------------------------------------------------------------------------- the preset


def _documented_caps() -> dict[str, str]:
    """``key -> value`` of the preset table in docs/pipeline.md ("The replication preset")."""
    text = (ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    section = text.split("## The replication preset", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", section, flags=re.M)
    assert rows, "docs/pipeline.md has no table of the preset's caps"
    return dict(rows)


def _value(config, dotted: str):
    node = config.to_dict()
    for part in dotted.split("."):
        node = node[part]
    return node


def test_preset_caps_are_as_documented(tmp_path):
    cfg = preset(tmp_path)
    documented = _documented_caps()
    for key, text in documented.items():
        try:
            expected = json.loads(text)
        except ValueError:  # a bare word: a string value
            expected = text
        assert _value(cfg, key) == expected, key
    # the values the study's power and significance rest on
    assert cfg.select.random.seeds + 1 > 20 * RANK_ROWS and cfg.evaluate.cross_culture_random + 1 > 20 * RANK_ROWS
    assert cfg.select.random.layer_matched and cfg.validate.layer_matched and cfg.validate.random_seeds >= 20
    assert cfg.validate.folds == 5 and len(set(cfg.validate.t_mlp_sweep) | {cfg.select.general.t_mlp}) >= 5
    assert cfg.validate.faith_top + cfg.validate.faith_threshold + cfg.validate.faith_random >= 150
    assert cfg.validate.faith_examples >= 64
    assert {"arc-easy", "arc-challenge", "piqa", "openbookqa"} <= set(cfg.evaluate.benchmarks)
    assert cfg.score.max_per_group == 0 and cfg.evaluate.max_per_group.get("blend", 0) == 0
    assert cfg.train["data"] == "mrpc" and cfg.train["part"] == "train" and cfg.runs("train") and cfg.runs("validate")
    assert cfg.evaluate.nlu_random is not None and cfg.evaluate.nlu_random >= 20
    assert cfg.model.dtype == "auto" and preset(tmp_path, **{"model.dtype": "float32"}).model.dtype == "float32"


def test_preset_needs_a_model():
    result = CliRunner().invoke(cli, ["run", "replication", "--print-config"])
    assert result.exit_code == 2 and "'model.name' is required" in result.output


def test_run_takes_model_and_data_dir_and_names_the_run_after_the_model(tmp_path, monkeypatch):
    args = ["run", "replication", "--model", "HuggingFaceTB/SmolLM2-135M", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--print-config"])
    assert result.exit_code == 0, result.output
    printed = load_config(tomllib.loads(result.output))
    assert printed.model.name == "HuggingFaceTB/SmolLM2-135M" and printed.data.data_dir == str(tmp_path)
    seen = {}

    def fake_run(cfg, out, **kwargs):
        seen["out"] = Path(out)
        raise SystemExit(0)

    monkeypatch.setattr("culture_neurons.pipeline.cli.run_pipeline", fake_run)
    CliRunner().invoke(cli, args)
    assert seen["out"] == Path("runs") / "replication-smollm2-135m"
    assert model_tag("models/m.gguf") == "m" and model_tag("smollm2-135m-instruct") == "smollm2-135m-instruct"


def test_planned_work_counts_by_hand(tmp_path):
    cfg = preset(tmp_path)
    n = {"blend": 1068, "culturalbench-easy": 146, "arc-easy": 500, "arc-challenge": 500, "piqa": 500}
    n |= {"openbookqa": 500, "commonsenseqa": 500}
    counts = {f"export:eval-{b}": k for b, k in n.items()}
    counts |= {"export:score-blend": 1129, "export:control-blend-control": 1129, "export:countryrc-countryrc": 224}
    work = {w.stage: w for w in planned_work(cfg, counts)}
    assert list(work) == ["score", "evaluate", "train", "validate"]
    assert work["score"].passes == 2 * (1129 + 1129 + 224)
    ablation = 1 + 1 + 100  # original, the general set, its random sets
    nlu = 1 + 1 + 20  # the NLU benchmarks see the first 20 random sets only
    cross = 8 + 100  # each country's set; 100 random sets per country, each on its own country's questions
    assert eval_conditions(cfg, "blend") == ablation + cross and eval_conditions(cfg, "piqa") == nlu
    assert work["evaluate"].passes == (ablation + cross) * (1068 + 146) + nlu * 2500
    conditions = 1 + 5 * (1 + 20)  # original; 5 swept sizes, each with 20 random sets
    faith = (150 + 4) * 64  # 150 neurons and 4 additivity sets, each over 64 examples
    compared = 4 * (1 + 20 + 150) * 64  # 4 methods: top-k set and 20 random sets, and the 150 neurons, over 64
    assert work["validate"].passes == conditions * (1068 + 146 + 5 * 200) + faith + 2 * 1129 + compared
    assert "100 optimizer steps" in work["train"].text
    assert work["train"].passes == 3 * 3 * 100 * 16 + 4 * sum(n.values())
    assert planned_lines(cfg, counts)[0].startswith("Planned work")


def test_dry_run_plans_every_stage_of_the_preset_offline(tmp_path):
    """The preset's every section plans, with the built-in demo data in place of the real files."""
    demo = {
        "model.name": str(save_tiny_model(tmp_path / "tiny-llama")),
        "data.data_dir": None,
        "score.datasets": ["demo-culture"],
        "score.controls": ["demo-control"],
        "score.max_per_group": 2,
        "evaluate.benchmarks": ["demo-culture", "demo-nlu"],
        "evaluate.max_per_group": 2,
        "train.data": "demo-nlu",
        "train.part": None,
    }
    cfg = load_config(builtin_config("replication"), demo)
    result = run_pipeline(cfg, tmp_path / "run", dry_run=True, progress=False)
    planned = {s.stage for s in result.steps if s.status == "would run"}
    assert planned == {"export", "score", "select", "evaluate", "train", "validate", "cards", "report"}
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_dry_run_plans_every_stage_on_the_real_data(tmp_path):
    model = save_tiny_model(tmp_path / "tiny-llama")
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "replication",
            "--model",
            str(model),
            "--data-dir",
            str(SHARED),
            "--dry-run",
            "-q",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    stages = {line.split()[0]: line for line in result.output.splitlines() if re.match(r"^[a-z]+ +\d+ ", line)}
    assert set(stages) == {"export", "score", "select", "evaluate", "train", "validate", "cards", "report"}
    assert all("would run" in line for line in stages.values())
    counts = dict(re.findall(r"^(\S+ \((?:heldout|identification)\)) +(\d+) ", result.output, flags=re.M))
    assert counts["blend (heldout)"] == "1068" and counts["culturalbench-easy (heldout)"] == "146"
    assert all(counts[f"{b} (heldout)"] == "500" for b in ("arc-easy", "arc-challenge", "piqa", "openbookqa"))
    assert "Planned work" in result.output and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ the fine-tuning claim


def _example(bench: str, i: int, options: int) -> Example:
    return Example(id=f"{bench}/{i}", prompt="q", answer="a", group=bench, dataset=bench, options=("a",) * options)


def test_fine_tuning_sides_against_a_plain_computation():
    rng = np.random.default_rng(3)
    sizes = {"blend": (60, 4), "culturalbench-easy": (40, 4), "piqa": (80, 2), "commonsenseqa": (50, 5)}
    benches = {b: [_example(b, i, k) for i in range(n)] for b, (n, k) in sizes.items()}
    base_rate = {"blend": 0.7, "culturalbench-easy": 0.6, "piqa": 0.8, "commonsenseqa": 0.2}  # csqa: at chance
    scores: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for b, exs in benches.items():
        base = (rng.random(len(exs)) < base_rate[b]).astype(float)
        scores[b, "base"] = base
        for cond, flip in (("top", 0.3), ("bottom", 0.05), ("random", 0.1)):
            scores[b, cond] = np.where(rng.random(len(exs)) < flip, 0.0, base)
        for cond in ("base", "top", "bottom", "random"):
            rows += [
                {"condition": cond, "benchmark": b, "id": ex.id, "score": scores[b, cond][j], "split": "heldout"}
                for j, ex in enumerate(exs)
            ]
    sides = side_changes(pd.DataFrame(rows), benches, ["top", "bottom", "random"], n_boot=200, seed=0)
    assert sides["culture"]["benchmarks"] == ["blend", "culturalbench-easy"] and sides["culture"]["n"] == 100
    assert sides["nlu"]["benchmarks"] == ["piqa"] and list(sides["nlu"]["left_out"]) == ["commonsenseqa"]
    for side, members in (("culture", ["blend", "culturalbench-easy"]), ("nlu", ["piqa"])):
        pooled = {c: np.concatenate([scores[b, c] for b in members]) for c in ("base", "top", "bottom", "random")}
        entry = sides[side]
        assert math.isclose(entry["base"]["value"], 100 * pooled["base"].mean())
        for cond in ("top", "bottom", "random"):
            assert math.isclose(entry["sets"][cond]["change"]["value"], 100 * (pooled[cond] - pooled["base"]).mean())
        d = pooled["top"] - pooled["random"]
        t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))  # the paired t statistic, by hand
        from scipy.stats import t as student

        contrast = entry["contrasts"]["top-random"]
        assert math.isclose(contrast["value"], 100 * d.mean())
        assert contrast["ci_low"] <= contrast["value"] <= contrast["ci_high"]
        assert math.isclose(contrast["p_one_sided"], float(student.cdf(t, d.size - 1)), rel_tol=1e-9)
        assert contrast["mde"] is not None and contrast["mde"] > 0
    claim = claim_input(sides)
    assert claim["key"] == "finetune-erosion" and claim["value"] == sides["culture"]["contrasts"]["top-random"]["value"]
    assert claim["expect"] == -1 and claim["above_chance"]


def test_training_after_a_cloze_prompt_targets_the_gold_option_text(tokenizer):
    from culture_neurons.training.data import encode_examples, trained_answer

    common = {"id": "q1", "group": "mrpc", "options": ("No", "Yes"), "labels": ("A", "B"), "answer": "B"}
    cloze = Example(prompt="Same meaning?\nAnswer:", template_id="cloze", **common)
    letters = Example(prompt="Same meaning?\nA. No\nB. Yes\nAnswer: ", template_id="nlu1", **common)
    assert trained_answer(cloze, cloze.prompt) == " Yes" and trained_answer(letters, letters.prompt) == "B"
    (encoded,) = encode_examples(tokenizer, [cloze], chat_template=False)
    answer = [t for t in encoded.labels if t != -100]
    assert tokenizer.decode(answer) == " Yes"


def test_the_train_stage_writes_the_claim_numbers(study):
    done = json.loads((study / "train" / "finetune.json").read_text())
    assert set(done["sides"]) <= {"culture", "nlu"} and done["sides"]
    for entry in done["sides"].values():
        assert {"benchmarks", "left_out", "above_chance", "n", "base", "sets", "contrasts"} <= set(entry)
        assert set(entry["contrasts"]) == {"top-random", "top-bottom"}
    assert done["claim"]["contrast"] == "top-random"
    manifest = json.loads((study / "manifest.json").read_text())
    assert manifest["steps"]["train"]["info"]["claim"] == done["claim"]


# --------------------------------------------------------------- one set: validity checks the run's own set


def test_nlu_benchmarks_see_the_first_nlu_random_sets_and_countries_their_own(study):
    """``evaluate.nlu_random = 2`` of 3 random sets: the NLU benchmark ranks among 2, the cultural one among 3;
    each country's random sets are evaluated on its own questions only."""
    summary = json.loads((study / "eval" / "ablation" / "summary.json").read_text(encoding="utf-8"))["results"]
    m = {b: summary[b]["all"]["m_random"] for b in summary}
    assert m == {"demo-culture": 3, "demo-nlu": 2}, m
    rows = pd.read_parquet(study / "eval" / "cross-culture" / "rows.parquet")
    drawn = rows[rows["condition"].str.startswith("suppress:random:")]
    assert not drawn.empty
    assert (drawn["condition"].str.split(":").str[2] == drawn["country"]).all()


def test_validity_checks_the_set_the_report_describes(study):
    general = json.loads((study / "neurons" / "general.json").read_text())
    validity = json.loads((study / "validity" / "summary.json").read_text())
    assert validity["default_set"]["source"] == "given" and validity["default_set"]["size"] == general["count"]
    default = next(r for r in validity["sensitivity"]["general"] if r["default"])
    assert default["size"] == general["count"] and default["overlap_default"]["jaccard"] == 1.0
    html = (study / "report.html").read_text(encoding="utf-8")
    assert f"the run&#x27;s own culture-general set ({general['count']} neurons)" in html


def test_a_report_on_a_reselected_set_says_so_and_how_far_it_is_from_the_run_s():
    from culture_neurons.analysis.sections.validity import checked_set

    given = checked_set({"default_set": {"size": 12, "source": "given"}})
    assert given.startswith("the run's own culture-general set (12 neurons)")
    other = checked_set(
        {"default_set": {"size": 9, "reference_overlap": {"jaccard": 0.43, "size_b": 12, "intersection": 6}}}
    )
    assert "selected again" in other and "not the run's set of 12 neurons" in other and "Jaccard 0.43" in other


# ---------------------------------------------------------------------------- summaries and the page


def test_summary_of_a_tiny_run_is_small_and_holds_what_the_page_shows(study):
    summary = run_summary(study)
    text = json.dumps(summary)
    assert summary["schema"] == SCHEMA and len(text) < 64_000
    assert str(study.parent) not in text and summary["model"]["name"] == "…/tiny-llama"
    assert summary["claims"] and all({"verdict", "p_holm", "mde", "rank"} <= set(c) for c in summary["claims"])
    assert {b["benchmark"] for b in summary["baselines"]} == {"demo-culture", "demo-nlu"}
    assert summary["validity"]["default_set"]["source"] == "given" and summary["validity"]["faithfulness_points"]
    assert set(summary["stages"]) >= {"score", "evaluate", "train", "validate"}
    assert summary["finetune"]["claim"]["contrast"] == "top-random"


def test_cli_writes_the_summary_and_the_page(study, tmp_path):
    runner = CliRunner()
    path = tmp_path / "replication" / "tiny.json"
    result = runner.invoke(cli, ["report", str(study), "--summary-json", str(path)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "replication.md"
    result = runner.invoke(cli, ["report", "--replication", str(path), "--out", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    for heading in ("## Baselines against chance", "## The claims", "## The paper's claims next to what we found"):
        assert heading in text
    summary = load_summaries([path])[0]
    assert all(c["title"] in text for c in summary["claims"])
    for name in ("dose-response", "faithfulness", "layers"):
        png = tmp_path / "replication" / f"tiny-llama-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"(replication/tiny-llama-{name}.png)" in text
    bad = runner.invoke(cli, ["report", "--replication", str(study / "manifest.json"), "--out", str(page)])
    assert bad.exit_code != 0 and "is not a replication summary" in bad.output
    assert runner.invoke(cli, ["report", "--replication", str(path)]).exit_code == 2  # --out is required


def test_the_page_says_what_its_numbers_say():
    summary = load_summaries([FIXTURE / "tiny.json"])[0]
    first = render_replication([summary], "replication", {})
    claim = summary["claims"][0]
    claim["verdict"], claim["value"] = "holds", -12.3
    second = render_replication([summary], "replication", {})
    assert first != second and "| holds | -12.3 [" in second


def test_command_rebuilt_from_a_preset_config(tmp_path):
    cfg = json.loads(json.dumps(preset(tmp_path, **{"select.random.seeds": 200}).to_dict()))
    cfg["run"]["out"] = "runs/elsewhere"
    assert replication_command(cfg) == (
        f"culture-neurons run replication --model some/Model-X --data-dir {shlex.quote('…/' + tmp_path.name)} "
        "--set select.random.seeds=200"
    )
    assert replication_command(tiny_run_config(tmp_path / "m", tmp_path / "r")) is None  # not from the preset


def _committed() -> tuple[list[Path], Path]:
    summaries = sorted((ROOT / "docs" / "replication").glob("*.json"))
    return summaries, ROOT / "docs" / "replication.md"


def test_fixture_page_regenerates_from_the_committed_summary():
    summaries = load_summaries([FIXTURE / "tiny.json"])
    made = replication_figures(summaries)
    assert render_replication(summaries, "replication", made) == (FIXTURE / "page.md").read_text(encoding="utf-8")


def test_docs_replication_page_regenerates_from_the_committed_summaries():
    paths, page = _committed()
    summaries = load_summaries(paths)
    made = replication_figures(summaries) if summaries else {}
    expected = render_replication(summaries, "replication", made)
    assert page.read_text(encoding="utf-8") == expected, (
        "docs/replication.md differs from what its summaries give; "
        "run `culture-neurons report --replication docs/replication/*.json --out docs/replication.md`"
    )


def write_fixture() -> None:
    """Rebuild ``tests/data/replication/{tiny.json,page.md}`` from a fresh tiny run (a deliberate change only)."""
    import tempfile

    from culture_neurons.fileio import write_json_atomic

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = tiny_study(Path(tmp))
        write_json_atomic(FIXTURE / "tiny.json", run_summary(run_dir))
    summaries = load_summaries([FIXTURE / "tiny.json"])
    page = render_replication(summaries, "replication", replication_figures(summaries))
    (FIXTURE / "page.md").write_text(page, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(write_fixture())


def test_stage_seconds_count_work_between_steps_but_not_between_sittings():
    """A batched pass runs before its steps are recorded: the time since the previous step counts; a second
    sitting's wait (the laptop closed overnight) does not; a step's own time is the floor."""
    from culture_neurons.analysis.summary_export import stage_seconds

    def step(stage, started, finished, seconds=1.0, status="done"):
        return {"stage": stage, "started": started, "finished": finished, "seconds": seconds, "status": status}

    manifest = {
        "created": "2026-12-07T10:00:00+0000",
        "sittings": ["2026-12-07T10:00:00+0000", "2026-12-08T09:00:00+0000"],
        "steps": {
            "score:a": step("score", "2026-12-07T10:00:10+0000", "2026-12-07T10:01:00+0000", 50.0),
            "evaluate:x": step("evaluate", "2026-12-07T10:21:00+0000", "2026-12-07T10:21:00+0000", 0.01),
            "evaluate:y": step("evaluate", "2026-12-07T10:21:00+0000", "2026-12-07T10:21:01+0000", 0.01),
            "train": step("train", "2026-12-08T09:00:05+0000", "2026-12-08T09:10:00+0000", 590.0),
            "validate": step("validate", "2026-12-08T09:10:00+0000", "2026-12-08T09:10:30+0000", 5, "failed"),
        },
    }
    got = stage_seconds(manifest)
    assert got == {"score": 60.0, "evaluate": 1201.0, "train": 600.0}
