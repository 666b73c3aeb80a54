"""The ``[validate]`` pipeline stage on a tiny run: it writes validity/summary.json, resumes, and runs when its
section is written (unless it says ``enabled = false``)."""

from __future__ import annotations

import json

import pytest

from tests.pipeline_helpers import save_tiny_model, tiny_run_config

VALIDATE = {
    "enabled": True,
    "nlu_identification": "demo-nlu-id",
    "nlu_identification_limit": 6,
    "identification_per_group": 2,
    "t_mlp_sweep": [0.05],
    "specific_t_sweep": [0.05],
    "specific_z_sweep": [0.0],
    "random_seeds": 1,
    "faith_top": 3,
    "faith_threshold": 2,
    "faith_random": 3,
    "faith_examples": 3,
    "additivity_k": [2],
    "enhance_factors": [0.0, 2.0],
    "mean_examples": 3,
    "n_boot": 20,
}


@pytest.mark.integration
def test_validate_stage_writes_the_summary_and_resumes(tmp_path):
    from culture_neurons.pipeline import run_pipeline

    model = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "run"
    config = tiny_run_config(model, out, validate=VALIDATE)
    run_pipeline(config, progress=False)
    summary = json.loads((out / "validity" / "summary.json").read_text())
    assert {"sensitivity", "stability", "specificity", "faithfulness", "variants"} <= summary.keys()
    assert summary["complete"] is True
    assert summary["default_set"]["reference_overlap"]["jaccard"] > 0  # validity's full table re-selects the run's set
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"]["validate"]["status"] == "done"
    mtime = (out / "validity" / "summary.json").stat().st_mtime_ns
    run_pipeline(config, progress=False)
    assert (out / "validity" / "summary.json").stat().st_mtime_ns == mtime  # fresh step: not run again


def test_validate_stage_runs_when_its_section_is_written(tmp_path):
    from culture_neurons.pipeline.config import load_config
    from culture_neurons.pipeline.stages.validate import STAGE

    def config(**sections):
        return load_config(tiny_run_config(tmp_path / "m", tmp_path / "r", **sections))

    assert not STAGE.enabled(config())  # left out: an optional stage does not run
    assert STAGE.enabled(config(validate={}))  # written, with no `enabled` line: it runs
    assert STAGE.enabled(config(validate={"n_boot": 20}))
    assert STAGE.enabled(config(validate={"enabled": True}))
    assert not STAGE.enabled(config(validate={"enabled": False, "n_boot": 20}))


def test_dry_run_lists_a_written_validate_section_and_warns_about_a_switched_off_one(tmp_path):
    from culture_neurons.pipeline import run_pipeline

    model = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "run"
    small = {k: v for k, v in VALIDATE.items() if k != "enabled"}
    plan = run_pipeline(tiny_run_config(model, out, validate=small), progress=False, dry_run=True)
    assert "validate" in {s.stage for s in plan.steps} and plan.warnings == []
    lines: list[str] = []
    off = run_pipeline(
        tiny_run_config(model, out, validate={"enabled": False, "n_boot": 20}),
        progress=False,
        dry_run=True,
        echo=lines.append,
    )
    assert "validate" not in {s.stage for s in off.steps}
    warning = "[config] config key 'validate.n_boot' is ignored: [validate] says enabled = false"
    assert off.warnings == [warning] and warning in lines  # printed before any work, and in the summary
    absent = run_pipeline(tiny_run_config(model, out), progress=False, dry_run=True)
    assert "validate" not in {s.stage for s in absent.steps} and absent.warnings == []
    assert not out.exists()
