"""``run`` on a shared cluster: SIGTERM, a lock per run directory, every config value checked before any
work, TOML that reads back, damaged run-directory files, and the provenance the manifest records."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from culture_neurons.errors import CultureNeuronsError
from culture_neurons.pipeline import ConfigError, load_config, run_pipeline, to_toml
from culture_neurons.pipeline.lock import RunLocked, run_lock
from tests.kill import Output, kill_when, scoring_checkpoint_at
from tests.pipeline_helpers import save_tiny_model, shared_run, tiny_run_config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return shared_run(tmp_path_factory)[2]


def _no_model(monkeypatch):
    from culture_neurons.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("no work may start on a bad config"))


# ---------------------------------------------------------------------------------------------
# every value checked before any work


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"evaluate": {"factor": math.nan}}, "config key 'evaluate.factor' must be a finite number, got nan"),
        (
            {"select": {"general": {"t_mlp": math.inf}}},
            "config key 'select.general.t_mlp' must be a finite number, got inf",
        ),
        (
            {"data": {"options": {"demo-culture": {"x": -math.inf}}}},
            "config key 'data.options.demo-culture.x' must be a finite number",
        ),
        ({"data": {"countries": ["Atlantis"]}}, "config key 'data.countries[0]': unknown country 'Atlantis'"),
        ({"data": {"countries": ["Iran", " "]}}, "config key 'data.countries[1]' holds an empty country name"),
        (
            {"select": {"specific": {"countries": ["Narnia"]}}},
            "config key 'select.specific.countries[0]': unknown country 'Narnia'",
        ),
        ({"evaluate": {"factor": -1.0}}, "config key 'evaluate.factor' must be 0 or more"),
        ({"model": {"revision": " "}}, "config key 'model.revision' is empty"),
        ({"run": {"report_to": "mlflow"}}, "config key 'run.report_to' must be one of tensorboard, wandb"),
    ],
)
def test_bad_values_name_the_key_and_leave_no_run_directory(model_dir, tmp_path, monkeypatch, patch, message):
    _no_model(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        run_pipeline(tiny_run_config(model_dir, out, **patch), progress=False)
    assert message in str(info.value)
    assert not out.exists()


def test_set_nan_on_the_command_line_fails_before_any_work(model_dir, tmp_path):
    from click.testing import CliRunner

    from culture_neurons.cli import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml(load_config(tiny_run_config(model_dir, tmp_path / "run"))))
    result = CliRunner().invoke(cli, ["run", str(cfg), "--set", "evaluate.factor=nan"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: config key 'evaluate.factor' must be a finite number, got nan"
    ]
    assert not (tmp_path / "run").exists()


def test_a_missing_model_is_refused_before_any_file_is_written(tmp_path):
    out = tmp_path / "run"
    for dry_run in (True, False):
        with pytest.raises(CultureNeuronsError) as info:
            run_pipeline(tiny_run_config(tmp_path / "no-such-model", out), progress=False, dry_run=dry_run)
        assert "no-such-model" in str(info.value) and "\n" not in str(info.value)
        assert not out.exists()


def test_a_bad_device_is_refused_before_any_file_is_written(model_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CultureNeuronsError, match="tpu9"):
        run_pipeline(tiny_run_config(model_dir, out, model={"device": "tpu9"}), progress=False)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# TOML that reads back


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(title=_TEXT, out=_TEXT.filter(lambda s: s.strip() != ""))
def test_print_config_round_trips_any_title_and_path(title, out):
    cfg = load_config({"model": {"name": "some-model"}, "run": {"title": title, "out": out}})
    text = to_toml(cfg)
    again = load_config(_parse(text))
    assert again.to_dict() == cfg.to_dict()
    assert again.run.title == title


def _parse(text: str) -> dict:
    from culture_neurons.pipeline.config import tomllib

    return tomllib.loads(text)


def test_manifest_config_toml_reads_back(model_dir, tmp_path_factory):
    out, _result, _ = shared_run(tmp_path_factory)
    manifest = json.loads((out / "manifest.json").read_text())
    assert load_config(_parse(manifest["config_toml"])).to_dict() == load_config(manifest["config"]).to_dict()


# ---------------------------------------------------------------------------------------------
# the lock


def test_a_second_run_stops_naming_the_first_ones_pid_and_host(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])  # alive until killed below
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": "now"}))
        with pytest.raises(RunLocked) as info, run_lock(tmp_path):
            pass
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(info.value)
        assert (tmp_path / ".lock").is_file()  # the live holder keeps it
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    with run_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "some-other-node", "since": "then"}))
    with pytest.raises(RunLocked, match="pid 1 on some-other-node"), run_lock(tmp_path):
        pass


def test_the_pipeline_refuses_a_locked_run_directory(model_dir, tmp_path, monkeypatch):
    _no_model(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": 1, "host": "node-7", "since": "then"}))
    with pytest.raises(RunLocked, match="in use by another culture-neurons run"):
        run_pipeline(tiny_run_config(model_dir, out), progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing else written


# ---------------------------------------------------------------------------------------------
# damaged run-directory files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "manifest.json is unreadable (not JSON"),
        ('{"format": "culture-neurons/run", "steps": [1, 2]}', "key 'steps' is damaged"),
        ('["a list"]', "is not a culture-neurons run manifest"),
        (b"\xff\xfe\x00", "not UTF-8 text"),
    ],
)
def test_a_damaged_manifest_is_one_line_naming_the_file(model_dir, tmp_path, monkeypatch, content, message):
    _no_model(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    path = out / "manifest.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CultureNeuronsError) as info:
        run_pipeline(tiny_run_config(model_dir, out), progress=False, dry_run=True)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# provenance and logging


def test_manifest_records_library_versions_and_model_provenance(tmp_path_factory):
    out, _result, _ = shared_run(tmp_path_factory)
    manifest = json.loads((out / "manifest.json").read_text())
    versions = manifest["versions"]
    for lib in ("torch", "transformers", "tokenizers", "huggingface_hub", "safetensors", "datasets", "peft", "lm-eval"):
        assert lib in versions, lib
    assert manifest["model"]["provenance"]["source"] == "local"
    exports = [rec for key, rec in manifest["steps"].items() if key.startswith("export:")]
    assert all("input_files" in rec["info"] for rec in exports)


def test_hub_data_is_pinned_and_fingerprinted_in_the_manifest(model_dir, tmp_path, monkeypatch):
    import culture_neurons.data.hub as hub

    calls = []

    def fake(hub_id, config, split, **kwargs):
        calls.append(kwargs)
        choices = {"label": ["A", "B", "C"], "text": ["stone", "water", "bread"]}
        return [
            {
                "id": f"q{i}",
                "question": f"What is wet {i}?",
                "question_concept": "c",
                "choices": choices,
                "answerKey": "B",
            }
            for i in range(4)
        ]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_load_dataset", fake)
    out = tmp_path / "run"
    config = tiny_run_config(
        model_dir,
        out,
        data={"revisions": {"commonsenseqa": "r2"}},
        evaluate={"benchmarks": ["demo-culture", "commonsenseqa"]},
    )
    run_pipeline(config, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    step = next(rec for key, rec in manifest["steps"].items() if key.startswith("export:") and "commonsenseqa" in key)
    (fetched,) = step["info"]["hub"].values()
    assert fetched["revision"] == "r2" and fetched["splits"]["validation"]["rows"] == 4
    assert len(fetched["splits"]["validation"]["sha256"]) == 64
    assert calls and all(c == {"revision": "r2"} for c in calls)
    local = [rec for key, rec in manifest["steps"].items() if key.startswith("export:") and "demo" in key]
    assert local and all("hub" not in rec["info"] for rec in local)


def test_tensorboard_gets_the_headline_numbers(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from culture_neurons.pipeline.logging_sinks import log_headline

    rows = [
        {
            "experiment": "ablation",
            "benchmark": "blend",
            "split": "heldout",
            "n": 10,
            "original": 50.0,
            "target": 40.0,
            "random": 48.0,
            "difference": -8.0,
            "p": 0.01,
        }
    ]
    lines = []
    log_headline("tensorboard", tmp_path, rows, [{"benchmark": "blend", "accuracy": 50.0}], echo=lines.append)
    acc = EventAccumulator(str(tmp_path / "logs" / "tensorboard"))
    acc.Reload()
    assert acc.Scalars("ablation/blend/heldout/difference")[0].value == pytest.approx(-8.0)
    assert acc.Scalars("baseline/blend")[0].value == pytest.approx(50.0)
    assert lines and "tensorboard" in lines[0]


def test_dry_run_on_an_existing_run_counts_afresh(model_dir, tmp_path):
    out = tmp_path / "run"
    small = {"score": {"max_per_group": 1}, "evaluate": {"experiments": []}, "report": {"enabled": False}}
    run_pipeline(tiny_run_config(model_dir, out, **small), progress=False)
    bigger = tiny_run_config(model_dir, out, **{**small, "score": {"max_per_group": 2}})
    counts = {
        s.key: (s.status, s.info.get("n"))
        for s in run_pipeline(bigger, progress=False, dry_run=True).steps
        if s.stage == "export"
    }
    assert counts["export:score-demo-culture"] == ("would run", 6)  # 2 per country now, not the recorded 3


# ---------------------------------------------------------------------------------------------
# SIGTERM


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.integration
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_scoring_marks_the_step_interrupted_and_resume_finishes(model_dir, tmp_path, signum, code):
    sizes = {
        "score": {"max_per_group": 12, "batch_size": 1, "checkpoint_every": 1},
        "evaluate": {"experiments": []},
        "report": {"enabled": False},
    }
    out = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml(load_config(tiny_run_config(model_dir, out, **sizes))))
    proc = _cli("run", cfg, "-q")
    ckpt = out / "scores" / "score-demo-culture.safetensors.ckpt"
    printed = Output(proc.stdout)
    kill_when(proc, scoring_checkpoint_at(ckpt, 1), "scoring checkpoint 1 of score-demo-culture", signum, expect=code)
    output = printed.text()
    last = output.strip().splitlines()[-1]
    assert (
        last.startswith("error: interrupted by")
        and "marked interrupted" in last
        and "rerun the same command to resume" in last
    )
    assert "nothing was written" not in output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"]["score:score-demo-culture"]["status"] == "interrupted"
    assert not (out / ".lock").exists()
    again = _cli("run", cfg, "-q")
    resumed, _ = again.communicate(timeout=600)
    assert again.returncode == 0, resumed[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(rec["status"] == "done" for rec in manifest["steps"].values())


def test_save_tiny_model_helper_is_reused(tmp_path):
    # The helper writes a loadable folder once and reuses it (the lock and SIGTERM tests rely on it).
    first = save_tiny_model(tmp_path / "m")
    mtime = (first / "config.json").stat().st_mtime_ns
    assert save_tiny_model(tmp_path / "m") == first and (first / "config.json").stat().st_mtime_ns == mtime


# ---------------------------------------------------------------------------------------------
# the time estimate


@pytest.mark.integration
def test_the_run_prints_an_estimate_before_scoring_and_none_when_nothing_is_left(model_dir, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_run_config(
        model_dir,
        out,
        score={"max_per_group": 1},
        evaluate={"experiments": ["ablation"]},
        select={"specific": {"enabled": False}, "random": {"seeds": 1}},
        report={"enabled": False},
    )
    lines: list[str] = []
    run_pipeline(cfg, progress=True, echo=lines.append)
    estimates = [x for x in lines if x.startswith("[estimate]")]
    assert len(estimates) == 1 and "on this machine" in estimates[0]
    # 3 tables x 3 countries x 1 example to score;
    # (3 countries x 2 + demo-nlu 2) examples x (original, general, 1 random)
    assert "scoring 9 examples" in estimates[0] and "up to 24 example-conditions" in estimates[0]
    first_score = next(i for i, x in enumerate(lines) if x.startswith("[score]"))
    assert lines.index(estimates[0]) < first_score
    lines.clear()
    run_pipeline(cfg, progress=True, echo=lines.append)
    assert not [x for x in lines if x.startswith("[estimate]")]


# ---------------------------------------------------------------------------------------------
# a real full disk under the run directory


@pytest.fixture
def run_fs(tmp_path):
    """A 2 MiB tmpfs (a tiny run without experiments needs about 0.5 MiB), unmounted afterwards."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.integration
def test_a_full_disk_mid_run_is_one_line_and_the_run_resumes(model_dir, run_fs):
    small_fs = run_fs
    from click.testing import CliRunner

    from culture_neurons.cli import cli
    from tests.reliability.test_disk_full import fill

    out = small_fs / "run"
    cfg = small_fs.parent / "c.toml"
    cfg.write_text(
        to_toml(load_config(tiny_run_config(model_dir, out, evaluate={"experiments": []}, report={"enabled": False})))
    )
    filler = fill(small_fs, leave=60_000)  # room for the exports and the manifest, not for every score table
    result = CliRunner().invoke(cli, ["run", str(cfg), "-q"])
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0], result.output
    assert not list(out.rglob("*.tmp")) and not (out / ".lock").exists()
    # The exports fit, so a later step hit the full disk: the line says what was kept and how to go on.
    assert "finished step(s) are kept in" in lines[0] and "rerun the same command to resume" in lines[0]
    assert "nothing was written" not in lines[0]
    filler.unlink()
    again = CliRunner().invoke(cli, ["run", str(cfg), "-q"])
    assert again.exit_code == 0, again.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(rec["status"] == "done" for rec in manifest["steps"].values())
