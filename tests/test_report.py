"""The HTML report: self-contained, complete, and rendered with every image loaded in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
from browser_helpers import Browser, find_browser
from pipeline_helpers import shared_run

from culture_neurons.analysis import build_report, write_report
from culture_neurons.errors import CultureNeuronsError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return shared_run(tmp_path_factory)[0]


def _images(text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', text)


def test_report_is_self_contained_and_complete(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:|//|file:)', text) and "<link" not in text and "<script" not in text
    images = _images(text)
    assert len(images) == 5  # layers, overlap, ablation, cross-culture, enhancement
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    for anchor in ("results", "where", "overlap", "ablation", "cross", "enhancement", "top", "provenance"):
        assert f'id="{anchor}"' in text
    general = json.loads((run_dir / "neurons/general.json").read_text())
    best = max((n for n in general["neurons"] if n["score"] is not None), key=lambda n: n["score"])
    assert f"<td class=l>{best['site']}</td><td>{best['layer']}</td><td>{best['index']}</td>" in text
    assert "[select.general]" in text and "Baseline accuracy" in text and "chance" in text
    for name in ("layers", "overlap", "ablation", "cross_culture", "enhancement"):
        assert (run_dir / "figures" / f"{name}.png").is_file()


def test_report_of_a_partial_run_says_what_is_missing(run_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run_dir, partial)
    shutil.rmtree(partial / "eval")
    text, figures = build_report(partial)
    assert "Not run" in text and [name for name, _ in figures] == ["layers", "overlap"]


def test_report_command(run_dir, tmp_path):
    from click.testing import CliRunner

    from culture_neurons.cli import cli

    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert str(out.resolve()) in result.output and out.is_file()
    with pytest.raises(CultureNeuronsError, match="no manifest.json"):
        write_report(tmp_path)


@pytest.mark.skipif(
    find_browser() is None, reason="chromium and chromium-driver are not installed (.ci/run installs them)"
)
def test_report_renders_in_headless_chromium_with_all_images_loaded(run_dir, tmp_path):
    page = run_dir / "report.html"
    expected = len(_images(page.read_text(encoding="utf-8")))
    with Browser() as browser:
        browser.open(page.as_uri())
        images = browser.images()
        assert len(images) == expected >= 5
        broken = [i for i in images if not i["complete"] or i["width"] == 0 or i["height"] == 0 or i["shown"] == 0]
        assert not broken, broken
        assert browser.run("return document.title") == "tiny test run"
        assert browser.run("return document.querySelectorAll('table').length") >= 6
        shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
