"""Packaging hygiene: one version, a licence file that matches the declared licence, a citation, typing marker."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import entry_points, metadata
from pathlib import Path

import culture_neurons

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_one_source_for_the_version():
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "culture_neurons.version.__version__"}
    assert metadata("culture-neurons")["Version"] == culture_neurons.__version__  # what pip installed
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^version: (\S+)$", cff, re.M).group(1) == culture_neurons.__version__


def test_licence_file_matches_the_declared_licence():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    floor = PYPROJECT["build-system"]["requires"][0]
    assert floor.startswith("setuptools>=") and int(floor.split(">=")[1].split(".")[0]) >= 77  # PEP 639 licence fields


def test_citation_cites_the_project_and_the_paper():
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert cff.startswith("cff-version: 1.2.0")
    for needle in (
        "Neuron-Level Analysis of Cultural Understanding in Large Language Models",
        "arXiv:2510.08284",
        "family-names: Yamamoto",
        "family-names: Kumon",
        "family-names: Bollegala",
        "family-names: Yanaka",
        "ICLR 2026",
        "type: software",
        "license: Apache-2.0",
    ):
        assert needle in cff, needle


def test_typed_marker_urls_python_floor_and_extras():
    assert (Path(culture_neurons.__file__).parent / "py.typed").is_file()
    project = PYPROJECT["project"]
    assert project["urls"]["Paper"] == "https://arxiv.org/abs/2510.08284"
    assert project["requires-python"] == ">=3.11"  # tomllib is used without a fallback
    extras = project["optional-dependencies"]
    assert extras["lm-eval"] == ["lm-eval>=0.4.10"] and extras["saq"][0].startswith("simplemma")
    assert {"nbclient>=0.10", "ipykernel>=6.29"} <= set(extras["test"])


def test_lm_eval_entry_point_and_script_are_declared():
    declared = PYPROJECT["project"]["entry-points"]["lm_eval.models"]
    assert declared == {"culture-neurons": "culture_neurons.integrations.lm_eval_model:CultureNeuronsLM"}
    assert PYPROJECT["project"]["scripts"]["culture-neurons-lm-eval"] == "culture_neurons.integrations.lm_eval_cli:main"
    installed = {ep.name: ep.value for ep in entry_points(group="lm_eval.models")}
    assert installed.get("culture-neurons") == declared["culture-neurons"]
