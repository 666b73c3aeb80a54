"""The config-driven pipeline on a tiny random model: end to end, resume, reruns after a change, kills, bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from culture_neurons import ScoreTable
from culture_neurons.pipeline import ConfigError, load_config, run_pipeline, to_toml
from tests.kill import kill_when, scoring_checkpoint_at
from tests.pipeline_helpers import shared_run, tiny_run_config, torchrun_command


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One complete run (shared with the report tests)."""
    out, result, _model = shared_run(tmp_path_factory)
    return out, result


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return shared_run(tmp_path_factory)[2]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _status(result) -> dict[str, str]:
    return {s.key: s.status for s in result.steps}


@pytest.mark.integration
def test_end_to_end_tiny_run(finished):
    out, result = finished
    assert {s.status for s in result.steps} == {"ran"}
    assert {s.stage for s in result.steps} == {"export", "score", "select", "evaluate", "cards", "report"}
    for rel in (
        "manifest.json",
        "report.html",
        "examples/score-demo-culture.jsonl",
        "scores/score-demo-culture.safetensors",
        "scores/control-demo-control.safetensors",
        "scores/countryrc-countryrc.safetensors",
        "neurons/general.json",
        "neurons/random-0.json",
        "neurons/random-1.json",
        "eval/ablation/summary.json",
        "eval/enhancement/summary.json",
        "eval/cross-culture/summary.json",
        "eval/cross-culture/matrix.csv",
        "figures/layers.png",
    ):
        assert (out / rel).is_file(), rel
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.ckpt"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0] or manifest["versions"]["torch"].startswith(
        torch.__version__[:4]
    )
    assert (
        manifest["model"]["identity"]["class"] == "LlamaForCausalLM" and manifest["model"]["identity"]["config_sha256"]
    )
    assert all(rec["status"] == "done" for rec in manifest["steps"].values())
    score = manifest["steps"]["score:score-demo-culture"]
    assert score["inputs_sha256"] and all(len(h) == 64 for h in score["outputs"].values())
    assert load_config(manifest["config"]).score.target == "choice"
    # The headline numbers: held-out ablation and enhancement per benchmark, with chance next to the baseline.
    assert {(h["experiment"], h["benchmark"]) for h in result.headline} == {
        (e, b) for e in ("ablation", "enhancement") for b in ("demo-culture", "demo-nlu")
    }
    assert {b["benchmark"]: b["chance"] for b in result.baseline} == {"demo-culture": 25.0, "demo-nlu": 25.0}
    assert "demo-culture" in result.results_table() and "score" in result.stage_table()
    table = ScoreTable.load(out / "scores/score-demo-culture.safetensors")
    assert table.options["target"] == "choice" and table.num_examples == 9  # 3 per country, 3 countries


def test_resume_after_completion_reruns_nothing(finished, model_dir):
    out, _ = finished
    before = _mtimes(out)
    again = run_pipeline(tiny_run_config(model_dir, out), progress=False)
    assert set(_status(again).values()) == {"skipped"}
    after = _mtimes(out)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }


def test_switching_recompute_leaves_every_step_up_to_date(finished, model_dir):
    """``[score] recompute`` changes time and memory only, so a finished run stays finished."""
    out, _ = finished
    config = tiny_run_config(model_dir, out, score={"recompute": True})
    from culture_neurons.pipeline.sections import scoring_options

    assert scoring_options(load_config(config)).recompute
    plan = run_pipeline(config, progress=False, dry_run=True)
    assert set(_status(plan).values()) == {"up to date"}


def test_changed_threshold_reruns_selection_onward_only(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_pipeline(tiny_run_config(model_dir, out), progress=False)
    from culture_neurons.attribution import engine

    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring must not rerun when only a selection threshold changed")

    monkeypatch.setattr(engine.ScoringEngine, "score", no_scoring)
    changed = tiny_run_config(model_dir, out, select={"general": {"t_mlp": 0.1}})
    plan = run_pipeline(changed, progress=False, dry_run=True)
    status = _status(plan)
    assert all(v == "up to date" for k, v in status.items() if k.startswith(("export:", "score:")))
    assert status["select"] == "would run" and status["report"] == "would run"
    result = run_pipeline(changed, progress=False)
    status = _status(result)
    assert all(v == "skipped" for k, v in status.items() if k.startswith(("export:", "score:")))
    assert status["select"] == "ran" and status["report"] == "ran"
    assert status["evaluate:demo-culture:suppress:general"] == "ran" and status["experiment:ablation"] == "ran"
    assert status["evaluate:demo-culture:original"] == "skipped"  # no neurons involved
    specific = [
        k
        for k in status
        if k.startswith("evaluate:demo-culture:suppress:") and k.split(":")[-1] in ("Iran", "Mexico", "Spain")
    ]
    assert specific and all(status[k] == "skipped" for k in specific)  # their neuron sets did not change
    general = json.loads((out / "neurons/general.json").read_text())
    assert general["params"]["t_mlp"] == 0.1


def test_dry_run_writes_nothing_and_counts_examples(model_dir, tmp_path, monkeypatch):
    from culture_neurons.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("a dry run must not load the model"))
    out = tmp_path / "run"
    result = run_pipeline(tiny_run_config(model_dir, out), progress=False, dry_run=True)
    assert not out.exists()
    assert {s.status for s in result.steps} == {"would run"}
    counts = {s.key: s.info.get("n") for s in result.steps if s.stage in ("export", "score")}
    assert counts["export:score-demo-culture"] == 9 and counts["score:countryrc-countryrc"] == 9
    assert counts["export:eval-demo-nlu"] == 2


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"score": {"targt": "choice"}}, "unknown config key 'score.targt'; did you mean 'target'?"),
        ({"select": {"general": {"t_mlp": "one percent"}}}, "config key 'select.general.t_mlp' must be a number"),
        ({"score": {"batch_size": 2.5}}, "config key 'score.batch_size' must be an integer"),
        ({"model": {"name": ""}}, "config key 'model.name' is required"),
        (
            {"evaluate": {"benchmarks": ["demo-culture", "no-such-bench"]}},
            "config key 'evaluate.benchmarks[1]': unknown benchmark 'no-such-bench'",
        ),
        ({"select": {"specific": {"t": 3.0}}}, "config key 'select.specific.t' is a fraction"),
        ({"evaluate": {"scorer": "telepathy"}}, "config section [evaluate]: unknown scorer 'telepathy'"),
        ({"bogus": {"x": 1}}, "unknown config key 'bogus'"),
    ],
)
def test_malformed_config_names_the_key_before_any_work(model_dir, tmp_path, monkeypatch, patch, message):
    from culture_neurons.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("no work may start on a bad config"))
    out = tmp_path / "run"
    config = tiny_run_config(model_dir, out, **patch)
    if patch == {"model": {"name": ""}}:
        del config["model"]["name"]
    with pytest.raises(ConfigError) as info:
        run_pipeline(config, progress=False)
    assert message in str(info.value)
    assert not out.exists()


def test_the_terminal_summary_says_what_holds(tmp_path_factory, capsys):
    from culture_neurons.analysis.claims import claims_lines
    from culture_neurons.pipeline.cli import print_summary

    out, result, _model = shared_run(tmp_path_factory)
    print_summary(result, 1.0)
    printed = capsys.readouterr().out
    lines = claims_lines(out)
    assert lines[0] == "What holds and what does not:" and len(lines) > 1
    assert "\n".join(lines) in printed and printed.index(lines[0]) > printed.index("Baseline accuracy")


def test_cli_prints_one_line_for_a_bad_config(model_dir, tmp_path):
    from click.testing import CliRunner

    from culture_neurons.cli import cli

    path = tmp_path / "bad.toml"
    path.write_text(f'[model]\nname = "{model_dir}"\n\n[score]\nbatch_size = "eight"\n')
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: config key 'score.batch_size' must be an integer, got 'eight'"
    ]
    missing = tmp_path / "nomodel.toml"
    missing.write_text('[score]\ntarget = "choice"\n')
    result = CliRunner().invoke(cli, ["run", str(missing)])
    assert result.exit_code == 2 and "'model.name' is required" in result.output


def test_config_toml_round_trips_and_builtins_load(model_dir, tmp_path):
    cfg = load_config(tiny_run_config(model_dir, tmp_path / "x", data={"options": {"demo-culture": {}}}))
    assert load_config(_toml_file(tmp_path, to_toml(cfg))).to_dict() == cfg.to_dict()
    from culture_neurons.pipeline import builtin_config, demo_config

    demo = demo_config()
    assert (
        demo.model.name == "smollm2-135m-instruct"
        and demo.score.target == "choice"
        and demo.evaluate.scorer == "loglik"
    )
    assert load_config(builtin_config("demo")).to_dict() == demo.to_dict()
    paper = load_config(builtin_config("paper"), {"data.data_dir": None})
    assert paper.score.target == "label" and paper.select.random.seeds == 10 and paper.select.general.t_attn == 0.002


def test_demo_with_data_dir_swaps_in_the_real_benchmarks(tmp_path):
    from culture_neurons.pipeline import demo_config

    cfg = demo_config(data_dir=tmp_path)
    assert cfg.score.datasets == ["blend"] and cfg.score.controls == ["blend-control"]
    assert cfg.evaluate.benchmarks == ["blend", "commonsenseqa"] and cfg.score.countryrc == "countryrc"


def test_train_stage_that_cannot_run_is_refused_before_any_work(model_dir, tmp_path, monkeypatch):
    """The train stage always ships (no plugin lookup); what can be missing is peft for ``[train] lora``."""
    from culture_neurons.models import loading
    from culture_neurons.pipeline import checks

    monkeypatch.setattr(checks, "lora_available", lambda: False)
    monkeypatch.setattr(
        loading, "load_model", lambda *a, **k: pytest.fail("no work may start on a [train] table that cannot run")
    )
    with pytest.raises(ConfigError, match=r"config key 'train\.lora' needs the 'peft' package"):
        run_pipeline(
            tiny_run_config(model_dir, tmp_path / "run", train={"modules": "top", "lora": True}), progress=False
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("sections", "stage", "runs"),
    [
        ({}, "train", False),  # an optional section left out does not run
        ({"train": {"modules": "top"}}, "train", True),  # written: it runs
        ({"train": {"enabled": False, "modules": "top"}}, "train", False),
        ({}, "validate", False),
        ({"validate": {}}, "validate", True),
        ({"validate": {"enabled": False}}, "validate", False),
        ({}, "evaluate", True),  # a section of the method itself runs with its defaults
        ({"evaluate": {"enabled": False}}, "evaluate", False),
        ({"evaluate": {"experiments": []}}, "evaluate", False),
        ({"report": {"enabled": False}}, "report", False),
    ],
)
def test_one_rule_for_every_section(tmp_path, sections, stage, runs):
    from culture_neurons.pipeline.run import STAGES

    config = tiny_run_config(tmp_path / "m", tmp_path / "r", **sections)
    if "evaluate" not in sections:
        del config["evaluate"]
    cfg = load_config(config)
    assert cfg.runs(stage) is runs
    assert next(s for s in STAGES if s.name == stage).enabled(cfg) is runs
    again = load_config(_toml_file(tmp_path, to_toml(cfg)))  # the printed config does the same
    assert again.runs(stage) is runs and again.to_dict() == cfg.to_dict()


def test_values_no_stage_reads_are_named_in_warnings(tmp_path):
    from culture_neurons.pipeline.ignored import ignored_values

    def warnings(**sections):
        return ignored_values(load_config(tiny_run_config(tmp_path / "m", tmp_path / "r", **sections)))

    assert warnings() == []
    assert warnings(train={"enabled": False, "lr": 1e-3, "modules": "top"}) == [
        "[config] config key 'train.lr' is ignored: [train] says enabled = false",
        "[config] config key 'train.modules' is ignored: [train] says enabled = false",
    ]
    assert warnings(report={"enabled": False, "top_neurons": 9}) == [
        "[config] config key 'report.top_neurons' is ignored: [report] says enabled = false"
    ]
    assert warnings(evaluate={"experiments": ["ablation"], "factor": 3.0}) == [
        "[config] config key 'evaluate.factor' is ignored: evaluate.experiments has no enhancement"
    ]
    off = warnings(evaluate={"enabled": False}, select={"general": {"enabled": False}})
    assert (
        "[config] config key 'evaluate.n_boot' is ignored: [evaluate] says enabled = false, so no experiment runs"
        in off
    )
    assert "[config] config key 'select.general.t_mlp' is ignored: [select.general] says enabled = false" in off
    assert any(line.startswith("[config] config key 'select.random.seeds' is ignored: random sets") for line in off)
    # what the train stage still reads from a switched-off [evaluate] is not called ignored
    kept = warnings(evaluate={"enabled": False}, train={"modules": "top"})
    assert not any("evaluate.n_boot" in line or "evaluate.benchmarks" in line for line in kept)
    with pytest.raises(ConfigError, match=r"config key 'train\.enabled' must be true/false, got 'no'"):
        load_config(tiny_run_config(tmp_path / "m", tmp_path / "r", train={"enabled": "no"}))


def test_builtin_configs_keep_their_stages():
    from culture_neurons.pipeline import builtin_config, demo_config

    demo = demo_config()
    assert demo.runs("validate") and demo.runs("evaluate") and not demo.runs("train")
    paper = load_config(builtin_config("paper"), {"data.data_dir": None})
    assert not paper.runs("validate") and paper.runs("evaluate") and not paper.runs("train")


def _toml_file(folder: Path, text: str) -> Path:
    path = folder / "config.toml"
    path.write_text(text)
    return path


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.integration
def test_sigkill_during_scoring_then_resume_is_bit_identical(model_dir, tmp_path):
    sizes = {
        "score": {"max_per_group": 12, "batch_size": 1, "checkpoint_every": 1},
        "evaluate": {"experiments": []},
        "report": {"enabled": False},
    }
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    (tmp_path / "ref").mkdir()
    ref_cfg = _toml_file(tmp_path / "ref", to_toml(load_config(tiny_run_config(model_dir, reference, **sizes))))
    cfg = _toml_file(tmp_path, to_toml(load_config(tiny_run_config(model_dir, killed, **sizes))))
    assert _cli("run", ref_cfg, "-q").wait(timeout=600) == 0
    proc = _cli("run", cfg, "-q")
    ckpt = killed / "scores" / "score-demo-culture.safetensors.ckpt"
    kill_when(proc, scoring_checkpoint_at(ckpt, 1), "scoring checkpoint 1 of score-demo-culture")
    assert not (killed / "scores" / "score-demo-culture.safetensors").exists()
    assert not list(killed.rglob("*.tmp"))
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["steps"]["score:score-demo-culture"]["status"] == "running"
    assert _cli("run", cfg, "-q").wait(timeout=600) == 0
    for name in ("score-demo-culture", "control-demo-control", "countryrc-countryrc"):
        a = ScoreTable.load(reference / "scores" / f"{name}.safetensors")
        b = ScoreTable.load(killed / "scores" / f"{name}.safetensors")
        assert all(torch.equal(a.scores[s], b.scores[s]) for s in a.sites), name
        assert torch.equal(a.counts, b.counts) and torch.equal(a.prob_sums, b.prob_sums)
    assert not list(killed.rglob("*.ckpt"))
    manifest = json.loads((killed / "manifest.json").read_text())
    assert all(rec["status"] == "done" for rec in manifest["steps"].values())


def test_a_checkpoint_of_other_inputs_is_discarded_not_an_error(model_dir, finished, tmp_path):
    """A leftover checkpoint from a run with other settings must not block (or leak into) a fresh run."""
    reference, _ = finished
    out = tmp_path / "run"
    stale = out / "scores" / "score-demo-culture.safetensors.ckpt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a checkpoint of some earlier settings")
    sizes = {"evaluate": {"experiments": []}, "report": {"enabled": False}}
    run_pipeline(tiny_run_config(model_dir, out, **sizes), progress=False)
    assert not stale.exists()
    a = ScoreTable.load(reference / "scores" / "score-demo-culture.safetensors")
    b = ScoreTable.load(out / "scores" / "score-demo-culture.safetensors")
    assert all(torch.equal(a.scores[s], b.scores[s]) for s in a.sites)


@pytest.mark.integration
def test_pipeline_under_torchrun_matches_one_process(finished, model_dir, tmp_path):
    """Two gloo ranks: the same exports, allclose tables, the same original accuracy, and one writer."""
    from culture_neurons.evaluation.api import read_rows

    reference, _ = finished
    out = tmp_path / "run"
    cfg = _toml_file(tmp_path, to_toml(load_config(tiny_run_config(model_dir, out))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = torchrun_command("run", cfg, "-q")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Run directory:") == 1  # only rank 0 prints and writes
    written = {k: v for k, v in _mtimes(out).items() if k != "manifest.json"}
    # resume, on a fresh rendezvous port: every rank skips the same steps
    again = subprocess.run(torchrun_command("run", cfg, "-q"), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "ran" not in again.stdout.split("Baseline")[0].replace("skipped", ""), (
        again.stdout[-3000:]
    )
    assert {k: v for k, v in _mtimes(out).items() if k != "manifest.json"} == written
    for rel in ("examples/score-demo-culture.jsonl", "examples/eval-demo-nlu.jsonl"):
        assert (out / rel).read_bytes() == (reference / rel).read_bytes()
    for name in ("score-demo-culture", "control-demo-control", "countryrc-countryrc"):
        a = ScoreTable.load(reference / "scores" / f"{name}.safetensors")
        b = ScoreTable.load(out / "scores" / f"{name}.safetensors")
        assert torch.equal(a.counts, b.counts)
        for s in a.sites:
            assert torch.allclose(a.scores[s], b.scores[s], rtol=1e-4, atol=1e-6 * a.scores[s].abs().max().item())
    for bench in ("demo-culture", "demo-nlu"):
        a = read_rows(reference / "eval" / "conditions" / bench / "original.parquet")
        b = read_rows(out / "eval" / "conditions" / bench / "original.parquet")
        assert list(a["id"]) == list(b["id"]) and list(a["prediction"]) == list(b["prediction"])
    assert (out / "report.html").is_file() and not list(out.rglob("*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(rec["status"] == "done" for rec in manifest["steps"].values())
