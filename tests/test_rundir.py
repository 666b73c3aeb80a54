"""The run-directory contract: the one slug rule, step keys and paths, and that old run directories still resume."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from culture_neurons import rundir
from culture_neurons.rundir import legacy_slug, slug

SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def test_slug_examples_from_the_contract():
    assert len({slug("日本"), slug("中国"), slug("한국")}) == 3
    assert slug("USA") != slug("usa") and slug("USA").lower() != slug("usa").lower()
    assert slug("../x") != slug("x") and "/" not in slug("../x")
    assert slug("blend") == "blend" and slug("random-0") == "random-0"  # plain names stay as they are
    assert slug("South Korea").startswith("south_korea--")
    assert slug("Côte d'Ivoire").startswith("cote_d_ivoire--")
    for name in (".", "..", "", "con", "NUL", "a--b", "-x", "x.", "..."):
        s = slug(name)
        assert SAFE.match(s) and s not in (".", "..") and not s.endswith((".", "-")), (name, s)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_slug_is_injective_and_safe_even_ignoring_case(a, b):
    sa, sb = slug(a), slug(b)
    assert SAFE.match(sa) and len(sa.encode()) <= 64
    assert sa == slug(a)  # stable
    if a != b:
        # Outputs are lowercase, so two names never meet on a case-insensitive filesystem either.
        assert sa.casefold() != sb.casefold()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=("Lu", "Ll", "Nd", "Zs", "Po")), min_size=1, max_size=20))
def test_slug_keeps_the_readable_ascii_part(name):
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", folded)
    s = slug(name)
    if words:
        assert s.startswith(words[0])


def test_legacy_slug_is_the_old_rule():
    assert legacy_slug("South Korea") == "South_Korea"
    assert legacy_slug("suppress:general") == "suppress_general"
    assert legacy_slug("日本") == legacy_slug("中国") == "x"  # why it had to go


def test_keys_and_paths_read_back():
    assert rundir.export_key("eval", "demo-nlu") == "export:eval-demo-nlu"
    assert rundir.parse_export_key("export:eval-demo-nlu") == ("eval", "demo-nlu")
    assert rundir.parse_export_key("score:score-blend") is None
    key = rundir.condition_key("blend", "suppress:random:3")
    assert (
        rundir.parse_condition_key(key) == ("blend", "suppress:random:3")
        and rundir.parse_condition_key("select") is None
    )
    assert rundir.benchmark_of_export("export:eval-demo-nlu", ["blend", "demo-nlu"]) == "demo-nlu"
    assert rundir.random_seed_of(rundir.random_stem(7)) == 7 and rundir.random_seed_of("general") is None
    assert rundir.is_specific(rundir.specific_stem("Iran")) and not rundir.is_specific("general")
    assert (
        rundir.condition_rel("blend", "suppress:South Korea")
        == f"eval/conditions/blend/{slug('suppress:South Korea')}.parquet"
    )
    steps = {"evaluate:blend:original": {"status": "done", "outputs": {"eval/conditions/blend/Original.parquet": "h"}}}
    assert (
        rundir.recorded_output(steps, "evaluate:blend:original", "new.parquet", ".parquet")
        == "eval/conditions/blend/Original.parquet"
    )
    assert rundir.recorded_output(steps, "evaluate:blend:other", "new.parquet", ".parquet") == "new.parquet"


def test_model_fingerprint_leaves_out_unset_new_keys(tmp_path):
    """A key added to [model] later (revision) must not change the fingerprint of an older run's steps."""
    old = {"name": "m", "dtype": None, "device": "cpu", "device_map": None, "max_memory": None, "site_map": None}
    assert rundir.model_fingerprint({**old, "revision": None}) == old
    assert rundir.model_fingerprint({**old, "revision": "abc"})["revision"] == "abc"


@pytest.mark.integration
def test_a_run_directory_named_by_the_old_rule_resumes(tmp_path, monkeypatch):
    """A run made with the old file names (South_Korea, suppress_general) resumes: every step is skipped."""
    from culture_neurons.pipeline import run_pipeline
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    model = save_tiny_model(tmp_path / "tiny-llama")
    out = tmp_path / "run"
    cfg = tiny_run_config(model, out)
    with monkeypatch.context() as m:
        m.setattr(rundir, "slug", legacy_slug)  # the naming of run directories written before rundir.slug
        first = run_pipeline(cfg, progress=False)
    assert {s.status for s in first.steps} == {"ran"}
    assert (out / "neurons" / "specific-Iran.json").is_file()
    assert (out / "eval" / "conditions" / "demo-culture" / "suppress_general.parquet").is_file()
    before = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run_pipeline(cfg, progress=False)
    assert {s.key: s.status for s in again.steps if s.status != "skipped"} == {}
    after = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(rec["status"] == "done" for rec in manifest["steps"].values())
    # A fresh run directory gets the new names.
    fresh = run_pipeline(
        tiny_run_config(
            model, tmp_path / "fresh", evaluate={"experiments": ["cross-culture"]}, report={"enabled": False}
        ),
        progress=False,
    )
    assert (tmp_path / "fresh" / "neurons" / f"{rundir.specific_stem('Iran')}.json").is_file() and fresh.steps
