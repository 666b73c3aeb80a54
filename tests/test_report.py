"""The HTML report: self-contained, complete, reproducible, free of machine paths, and rendered with every image
loaded in headless Chromium; its "What holds" box and validity section are rendered from the run's numbers."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from culture_neurons.analysis import build_report, claims, write_report
from culture_neurons.analysis.stats import format_p
from culture_neurons.errors import CultureNeuronsError
from tests.browser_helpers import Browser, find_browser
from tests.pipeline_helpers import shared_run
from tests.report_helpers import validity_summary, write_validity


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return shared_run(tmp_path_factory)[0]


def _images(text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', text)


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def _section(text: str, anchor: str) -> str:
    return text.split(f'id="{anchor}"', 1)[1].split("<h2", 1)[0]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


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


def test_every_table_has_a_caption_and_the_box_comes_first(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    tables = re.findall(r'<figure class="tbl"><figcaption>(.*?)</figcaption><table>', text)
    assert len(tables) == text.count("<table>") >= 8 and all(len(c) > 30 for c in tables)
    assert text.index('id="holds"') < text.index('id="results"') < text.index('id="where"')
    # The per-country tables say what the score is and how the pools are ranked.
    top = _section(text, "top")
    assert "country score" in top and "ranked together" in top and "never ranked together" in top


def test_box_shows_the_verdicts_computed_from_the_summaries(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    box = text.split('id="holds"', 1)[1].split("</section>", 1)[0]
    checked = claims.evaluate_claims(claims.read_numbers(run_dir))
    assert {c.key for c in checked} == {
        "cultural-drop",
        "nlu-spared",
        "own-country",
        "own-country-random",
        "related",  # Spain and Mexico are related in the default table; Iran is left out
        "enhancement",
        "layers",
    }
    # The first line of the page and of the box is the overall verdict, computed from the same claims.
    overall = claims.overall_verdict(checked)
    first = text.split("</nav>", 1)[1].lstrip()
    assert first.startswith(f'<p class="overall"><b>Overall:</b> {overall.text}'.replace("'", "&#x27;"))
    assert box.split("</h2>", 1)[1].startswith('<p class="overall"><b>Overall:</b> ')
    assert all(row.replace("'", "&#x27;") in box.split("</p>", 1)[0] for row in overall.deciding())
    for c in checked:
        assert c.verdict in claims.VERDICTS
        assert (
            '<span class="verdict '
            f'{"good" if c.verdict == claims.HOLDS else "bad" if c.verdict == claims.FAILS else "ns"}">'
            f"{c.verdict}</span>" in box
        )
        assert c.number.replace("'", "&#x27;") in box


def test_interventions_show_the_ci_of_delta_and_one_p_format(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    summary = json.loads((run_dir / "eval/ablation/summary.json").read_text())
    for entry in summary["results"].values():
        d = entry["heldout"]["difference"]
        cell = f"{d['value']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"
        assert cell in _section(text, "results") and cell in _section(text, "ablation")
        assert f"<td>{format_p(d['p_one_sided'])}</td>" in _section(text, "ablation")
    assert "***" not in text.split("<figure><img", 1)[0] + "".join(re.findall(r"<table>.*?</table>", text))
    assert (
        format_p(0.0004) == "<0.001"
        and format_p(0.0123) == "0.012"
        and format_p(None) == "-"
        and format_p(float("nan")) == "-"
    )


def test_cross_culture_cells_show_n_ci_and_resolution(run_dir):
    cross = _section((run_dir / "report.html").read_text(encoding="utf-8"), "cross")
    change = json.loads((run_dir / "eval/cross-culture/summary.json").read_text())["results"]["change"]
    cells = [v for row in change.values() for v in row.values()]
    for v in cells:
        assert (
            f"{v['value']:+.1f} [{v['ci_low']:+.1f}, {v['ci_high']:+.1f}]<br><span class=note>n={v['n']}</span>"
            in cross
        )
    n = {v["n"] for v in cells}
    assert f"Each cell rests on {min(n) if len(n) == 1 else f'{min(n)}–{max(n)}'} questions" in cross
    # Each country's set against random sets of its size, and the related-culture statistic, with their CIs.
    results = json.loads((run_dir / "eval/cross-culture/summary.json").read_text())["results"]
    for country, block in results["vs_random"]["per_country"].items():
        two = block["excess_ci_two_level"]
        row = f"<td class=l>{country}</td><td>{block['n']}</td>"
        assert row in cross and f"{two['value']:+.1f} [{two['ci_low']:+.1f}, {two['ci_high']:+.1f}]" in cross
        assert f"of {block['m_random'] + 1}</td>" in cross
    related = results["related"]
    assert "Related: Spain–Mexico" not in cross and "UK–USA, Spain–Mexico, China–South Korea" in cross
    assert f"{related['value']:+.1f} [{related['ci_low']:+.1f}, {related['ci_high']:+.1f}]" in cross
    assert "Left out: Iran: no related country among the evaluated ones" in cross


def test_report_is_reproducible_and_leaks_no_path(run_dir, tmp_path):
    manifest = _manifest(run_dir)
    text, _ = build_report(run_dir, manifest=manifest)
    assert text == (run_dir / "report.html").read_text(
        encoding="utf-8"
    )  # the pipeline's report equals a later `report RUN`
    # A resumed run records its steps in another order, and the pipeline renders while its report step is "running".
    shuffled = dict(reversed(list(manifest["steps"].items())))
    shuffled["report"] = {**shuffled["report"], "status": "running", "outputs": {}}
    assert build_report(run_dir, manifest={**manifest, "steps": shuffled})[0] == text
    steps = re.findall(r"<tr><td class=l>([^<]+)</td><td class=l>([^<]+)</td>", text.split("<h3>Steps</h3>", 1)[1])
    stages = [k.split(":", 1)[0] for k, _ in steps]
    order = ["export", "score", "select", "evaluate", "experiment", "cards", "report"]
    assert stages == sorted(stages, key=lambda s: order.index(s) if s != "experiment" else order.index("evaluate")), (
        stages
    )
    assert steps[-1] == ("report", "done")
    model_dir = manifest["config"]["model"]["name"]
    for leak in (str(run_dir), str(run_dir.parent), model_dir, str(Path(model_dir).parent)):
        assert leak not in text, leak
    assert "…/tiny-llama" in text and "# out: the run directory (not shown)" in text


def test_report_uses_the_configs_top_neurons(run_dir):
    from culture_neurons.analysis.report import context
    from culture_neurons.analysis.sections import neurons

    manifest = _manifest(run_dir)
    assert manifest["config"]["report"]["top_neurons"] == 5
    default = neurons.top(context(run_dir, None, manifest))
    assert default == neurons.top(context(run_dir, 5, manifest)) != neurons.top(context(run_dir, 2, manifest))
    assert default.split("</table>", 1)[0].count("<tr>") - 1 == 5
    assert context(run_dir, None, {}).top_n == 25  # no config at all: the documented default


def test_report_out_elsewhere_leaves_the_run_directory_untouched(run_dir, tmp_path):
    from click.testing import CliRunner

    from culture_neurons.cli import cli

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "figures")
    before = _files(run)
    for p in [run, *run.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)  # read-only (root ignores it, so the file check below is what proves it)
    try:
        out = tmp_path / "elsewhere" / "r.html"
        out.parent.mkdir()
        result = CliRunner().invoke(cli, ["report", str(run), "--out", str(out)])
        assert result.exit_code == 0, result.output
    finally:
        for p in [run, *run.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert _files(run) == before
    assert out.read_text(encoding="utf-8") == build_report(run, manifest=_manifest(run))[0]
    assert sorted(p.name for p in (tmp_path / "elsewhere" / "r-figures").iterdir()) == [
        "ablation.png",
        "cross_culture.png",
        "enhancement.png",
        "layers.png",
        "overlap.png",
    ]


def test_chance_banner_follows_the_baselines(run_dir):
    from culture_neurons.analysis.report import context
    from culture_neurons.analysis.sections import results

    manifest = _manifest(run_dir)
    base = {k: v for k, v in manifest["steps"].items() if k.startswith("evaluate:") and k.endswith(":original")}

    def with_baseline(value: float) -> dict:
        return {
            **manifest,
            "steps": {
                **manifest["steps"],
                **{k: {**v, "info": {**v["info"], "value": value, "n": 400}} for k, v in base.items()},
            },
        }

    low = results.banner(context(run_dir, None, with_baseline(20.0)))
    assert 'id="chance"' in low and low.count("below the chance level") == len(base) == 2
    assert "--target choice" in low  # the fix is named
    assert results.banner(context(run_dir, None, with_baseline(90.0))) == ""
    assert 'id="chance"' in (run_dir / "report.html").read_text(encoding="utf-8")  # the random tiny model is at chance


def test_validity_section_renders_from_the_summary(run_dir, tmp_path):
    from culture_neurons.analysis.report import context
    from culture_neurons.analysis.sections import validity

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    manifest = _manifest(run)

    def render() -> tuple[str, list[str]]:
        ctx = context(run, None, manifest)
        return validity.render(ctx), [name for name, _ in ctx.figures.items]

    assert "Not run" in render()[0] and render()[0].startswith('<section id="validity">')
    write_validity(run, validity_summary(gap=(8.1, 3.0, 13.2)))
    section, figures = render()
    assert "the cultural drop exceeds the NLU drop: gap +8.1 points [+3.0, +13.2]" in section
    assert "the folds agree well above chance: Jaccard 0.31" in section and "rho = 0.42 [0.21, 0.60]" in section
    assert figures == ["validity_dose_response", "validity_faithfulness", "validity_enhancement"]
    assert "+8.1 [+3.0, +13.2]</td><td>0.002</td>" in section  # the specificity row, p in the one format
    write_validity(run, validity_summary(gap=(1.0, -2.0, 4.0), rho=(0.05, -0.2, 0.3), fold_jaccard=0.003))
    section = render()[0]
    assert "do not differ significantly: gap +1.0 points [-2.0, +4.0]" in section
    assert "does not significantly predict" in section and "no more than random" in section
    (run / "validity/summary.json").write_text("{not json")
    with pytest.raises(CultureNeuronsError, match=r"validity/summary.json:1: not valid JSON"):
        render()


def test_plots_return_figures_whose_axes_fit_their_bars():
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from culture_neurons.analysis import plots

    general = pd.DataFrame({"mlp.gate": [105, 3, 0, 7], "attn.q": [0, 1, 2, 30]}, index=pd.RangeIndex(4, name="layer"))
    fig = plots.layer_figure(general, {})
    assert isinstance(fig, Figure) and plots.to_png(fig).startswith(b"\x89PNG")
    ax = fig.axes[0]
    tops = [r.get_y() + r.get_height() for r in ax.patches]
    lefts, rights = [r.get_x() for r in ax.patches], [r.get_x() + r.get_width() for r in ax.patches]
    assert max(tops) == 105 and ax.get_ylim()[1] >= 1.2 * max(
        tops
    )  # headroom: the tallest bar (layer 0) stays off the frame
    assert min(lefts) - ax.get_xlim()[0] >= 0.45 and ax.get_xlim()[1] - max(rights) >= 0.45
    matrix = pd.DataFrame(np.eye(2), index=["a", "b"], columns=["a", "b"])
    assert isinstance(plots.overlap_figure(matrix), Figure) and isinstance(plots.cross_culture_figure(matrix), Figure)


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
        box = browser.run(
            "const r = document.getElementById('holds').getBoundingClientRect(); return [r.top, r.width, r.height]"
        )
        results = browser.run("return document.getElementById('results').getBoundingClientRect().top")
        assert box[0] < results and box[1] > 500 and box[2] > 100  # the box is shown, wide, above the results
        shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


@pytest.mark.skipif(
    find_browser() is None, reason="chromium and chromium-driver are not installed (.ci/run installs them)"
)
def test_validity_section_renders_in_headless_chromium(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    write_validity(run, validity_summary())
    page = write_report(run, out=tmp_path / "validity.html")
    with Browser() as browser:
        browser.open(page.as_uri())
        images = [
            i
            for i in browser.images()
            if i["alt"] in ("dose-response curve", "faithfulness scatter", "enhancement factor sweep")
        ]
        assert len(images) == 3 and all(i["complete"] and i["width"] > 0 and i["shown"] > 0 for i in images), images
        shown = browser.run(
            "const r = document.getElementById('validity').getBoundingClientRect(); return [r.width, r.height]"
        )
        assert shown[0] > 500 and shown[1] > 1000


# ---------------------------------------------------------------------------------------------
# presentation: every number is shown in the unit its heading names, every legend covers every value


def _synthetic_context(run: Path):
    """A report context over a bare folder holding only the synthetic summaries a test wrote (no model run)."""
    from culture_neurons.analysis.report import context

    return context(run, None, {})


def _validity_section(run: Path, summary: dict) -> str:
    from culture_neurons.analysis.sections import validity

    write_validity(run, summary)
    return validity.render(_synthetic_context(run))


def _subsection(section: str, name: str) -> str:
    return section.split(f'id="validity-{name}"', 1)[1].split("<h3", 1)[0]


def _cells(html_table: str) -> tuple[list[str], list[list[str]]]:
    header = [re.sub("<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", html_table)]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(<td.*?)</tr>", html_table)]
    return header, rows


def test_threshold_sweep_shows_the_thresholds_in_the_unit_of_its_heading(tmp_path):
    # The summary holds thresholds as fractions (0.01 = the top 1 %), as the validity stage writes them.
    summary = validity_summary()
    fractions = [0.005, 0.01, 0.02, 0.04]
    for row, t in zip(summary["sensitivity"]["general"], fractions):
        row.update(t_mlp=t, t_attn=t / 5, default=t == 0.01)
    sens = _subsection(_validity_section(tmp_path, summary), "sensitivity")
    header, rows = _cells(sens.split("<table>", 1)[1])
    assert len(rows) == len(fractions)
    for col, key in ((0, "t_mlp"), (1, "t_attn")):
        shown = [float(r[col].split(" ", 1)[0]) for r in rows]
        want = [100 * r[key] if "%" in header[col] else r[key] for r in summary["sensitivity"]["general"]]
        assert shown == pytest.approx(want, rel=1e-3), (header[col], shown, want)
    assert rows[1][0] == "1 (default)"  # 0.01 shown as the percentage its heading announces


def test_additivity_legend_explains_every_ratio_it_can_show(tmp_path):
    summary = validity_summary()
    summary["faithfulness"]["additivity"] = [
        {"k": 5, "joint": -0.0109, "sum_single": 0.00395, "ratio": -2.76},
        {"k": 10, "joint": 0.004, "sum_single": 0.01, "ratio": 0.4},
        {"k": 15, "joint": 0.03, "sum_single": 0.01, "ratio": 3.0},
    ]
    faith = _subsection(_validity_section(tmp_path, summary), "faithfulness")
    caption = re.findall(r'<figure class="tbl"><figcaption>(.*?)</figcaption>', faith)[-1]  # the additivity table
    assert "-2.76" in faith
    # Each range of joint / sum of single effects gets its meaning.
    assert "below 0" in caption and "opposite sign" in caption
    assert "between 0 and 1" in caption and "less than the sum" in caption
    assert "1 = additive" in caption
    assert "above 1" in caption and "more than the sum" in caption


def test_enhancement_curve_passes_through_factor_one_at_zero():
    from culture_neurons.validity.plots import enhancement_figure

    section = validity_summary()["variants"]  # factors 0, 2 and 3, as a sweep without 1 records them
    fig = enhancement_figure(section)
    xs, ys = (list(map(float, v)) for v in fig.axes[0].lines[0].get_data())  # the culture curve
    assert xs == [0.0, 1.0, 2.0, 3.0] and ys[1] == 0.0  # unchanged model: change 0 by definition
    # A sweep that measured factor 1 keeps its own point (no duplicate).
    section["enhancement"].append(
        {"factor": 1.0, "effect": {"culture": {"change": {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}}}}
    )
    xs = [float(x) for x in enhancement_figure(section).axes[0].lines[0].get_xdata()]
    assert xs == [0.0, 1.0, 2.0, 3.0]


def test_stability_text_names_templates_only_when_the_table_has_their_row(tmp_path):
    summary = validity_summary()
    assert summary["stability"]["templates"] is None  # only the folds row
    stab = _subsection(_validity_section(tmp_path, summary), "stability")
    assert "<td class=l>folds</td>" in stab and "template" not in stab.lower()
    stab_with = dict(summary["stability"])
    stab_with["templates"] = {
        "sets": {"cloze": 70, "mcq": 75},
        "summary": {"jaccard": 0.2, "range": [0.2, 0.2], "random_expected": 0.004, "random_ci": [0.0, 0.01]},
    }
    stab = _subsection(_validity_section(tmp_path, {**summary, "stability": stab_with}), "stability")
    assert "<td class=l>templates</td>" in stab and "template" in stab.split("<table>", 1)[0].split("</h3>", 1)[1]


def test_experiment_caption_says_what_each_error_bar_is(tmp_path):
    from culture_neurons.analysis.sections import experiments
    from tests.report_helpers import experiment_summary

    folder = tmp_path / "eval" / "ablation"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(experiment_summary({"blend": (-5.0, -8.0, -2.0)})))
    html_text = experiments.experiment(_synthetic_context(tmp_path), "ablation")
    caption = html_text.split("<figcaption>", 1)[1].split("</figcaption>", 1)[0]
    assert "Bars: accuracy with 95% bootstrap CIs" not in caption  # not every bar shows an accuracy CI
    assert "original and suppressed bars" in caption and "bootstrap CI of the accuracy" in caption
    assert "random bar" in caption and "paired-bootstrap CI of the random sets' change" in caption


def test_ablation_table_and_box_show_rank_p_mc_power_and_holm(tmp_path):
    import numpy as np

    from culture_neurons.analysis.sections import experiments, results
    from culture_neurons.evaluation.metrics import compare_to_random, mean_ci

    rng = np.random.default_rng(3)
    original = (rng.random(300) < 0.7).astype(float)
    flip = lambda p: np.where(rng.random(300) < p, 0.0, original)
    target, randoms = flip(0.3), np.stack([flip(0.03) for _ in range(20)])
    block = {"original": mean_ci(original, 50), "target": mean_ci(target, 50)}
    block |= compare_to_random(original, target, randoms, n_boot=200)
    folder = tmp_path / "eval" / "ablation"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"config": {}, "results": {"blend": {"heldout": block}}}))
    header, rows = _cells(experiments.experiment(_synthetic_context(tmp_path), "ablation").split("</figure>", 1)[1])
    cell = dict(zip(header, rows[0]))
    two = block["excess_ci_two_level"]
    assert cell["rank by drop"] == "1st of 21" and cell["p_mc"] == format_p(1 / 21)
    assert cell["CI over items and random sets"] == f"[{two['ci_low']:+.1f}, {two['ci_high']:+.1f}]"
    assert cell["detectable Δ"] == f"{block['mde']:.1f}"
    checked = claims.evaluate_claims(
        claims.RunNumbers(ablation={"results": {"blend": {"heldout": block}}}, kinds={"blend": "culture"})
    )
    header, rows = _cells(results.holds_box(checked))
    box = dict(zip(header, rows[0]))
    assert box["rank among random sets"] == "1st of 21" and box["Holm p"] == format_p(checked[0].p_holm)
    assert box["detectable at 80% power"] == f"{block['mde']:.1f} points"
    assert "Holm" in results.holds_box(checked).split("</figcaption>", 1)[0]


@pytest.mark.skipif(
    find_browser() is None, reason="chromium and chromium-driver are not installed (.ci/run installs them)"
)
def test_neuron_cards_open_sort_and_filter_in_headless_chromium(run_dir):
    from culture_neurons.cards import read_cards

    cards = read_cards(run_dir / "neurons/cards.jsonl")
    card = cards[0]
    anchor = f"card-{card.site.replace('.', '-')}-{card.layer}-{card.index}"
    visible_rows = (
        "return Array.from(document.querySelectorAll('.cv-row'))"
        ".filter(r => r.getBoundingClientRect().height > 0).map(r => r.id)"
    )
    with Browser() as browser:
        browser.open((run_dir / "report.html").as_uri())
        body = f"document.getElementById('{anchor}').querySelector('.card')"
        assert browser.run(f"return {body}.checkVisibility()") is False  # closed until its row is clicked
        browser.run(f"document.querySelector('#{anchor} > summary').click()")
        assert browser.run(f"return document.getElementById('{anchor}').open") is True
        assert browser.run(f"return {body}.checkVisibility()") is True
        shown = browser.run(f"return {body}.innerText")
        assert browser.run(f"return {body}.getBoundingClientRect().height") > 200
        for token in card.promoted[:3]:
            assert token.token.strip() == "" or token.token.strip() in shown, token
        promoted = browser.run(f"return {body}.querySelector('.promoted').innerText")
        assert all(f"{t.logit:+.3g}" in promoted for t in card.promoted)
        assert card.top_examples[0].id in shown and card.summary in shown
        assert len(browser.run(visible_rows)) == len(cards)
        layer = sorted({c.layer for c in cards}).index(card.layer)
        browser.run(f"document.querySelector('label[for=\"cv-layer-{layer}\"]').click()")
        rows = browser.run(visible_rows)
        assert anchor in rows and len(rows) == sum(c.layer == card.layer for c in cards) < len(cards)
        browser.run("document.querySelector('label[for=\"cv-layer-all\"]').click()")
        browser.run("document.querySelector('label[for=\"cv-sort-1\"]').click()")  # by layer
        ordered = browser.run(
            "return Array.from(document.querySelectorAll('.cv-row'))"
            ".sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)"
            ".map(r => Number(r.id.split('-').slice(-2)[0]))"
        )
        assert ordered == sorted(ordered) and len(set(ordered)) > 1
