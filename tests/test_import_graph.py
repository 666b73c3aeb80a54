"""tools/import_graph.py: the package keeps its layers, and the tool catches what used to slip through
(imports of the package root, cycles made of annotation-only imports, a command module importing a
higher layer, functions with too many parameters)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_cycle_upward_or_private_import(graph):
    report = graph.analyse(ROOT / "src")
    assert report["cycles"] == [] and report["simple_cycles"] == []
    assert report["upward_imports"] == []
    assert report["private_imports"] == []
    assert report["unlayered_modules"] == []
    assert "evaluation.sweep.run_variants" not in {
        f"{f['module']}.{f['function']}" for f in report["functions_over_params"]
    }


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "culture_neurons" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_tool_reports_what_the_rules_forbid(graph, tmp_path):
    params = ", ".join(f"p{i}" for i in range(13))
    src = _write(
        tmp_path,
        {
            "__init__.py": "from .selection.a import thing\n",
            "version.py": '__version__ = "0"\n',
            "selection/__init__.py": "",
            "selection/a.py": f"from .. import __version__\n\n\ndef thing({params}):\n    pass\n",
            "selection/b.py": "from .c import C\n",
            "selection/c.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .b import B\nC = 1\n",
            "evaluation/__init__.py": "",
            "evaluation/cli.py": "def run():\n    from ..integrations.tool import go\n",
            "integrations/__init__.py": "",
            "integrations/tool.py": "from ..version import __version__\n",
        },
    )
    report = graph.analyse(src)
    upward = {(u["from"], u["to"]) for u in report["upward_imports"]}
    assert ("selection.a", "culture_neurons") in upward  # the package root is the top layer
    assert ("evaluation.cli", "integrations.tool") in upward  # a command module sits in its package's layer
    assert ["selection.b", "selection.c"] in report["cycles"]  # an annotation-only import closes a circle
    assert ["culture_neurons", "selection.a"] in report["cycles"]
    assert report["functions_over_params"] == [{"module": "selection.a", "function": "thing", "params": 13}]
    assert ("integrations.tool", "version") not in upward  # the version module is the lowest layer
    assert graph.main([str(src), "--check"]) == 1


def test_strict_also_fails_on_too_many_parameters(graph, tmp_path, capsys):
    params = ", ".join(f"p{i}" for i in range(13))
    src = _write(tmp_path, {"__init__.py": "", "errors.py": f"def f({params}):\n    pass\n"})
    assert graph.main([str(src), "--check"]) == 0
    assert graph.main([str(src), "--strict"]) == 1
    assert "errors.f: 13" in capsys.readouterr().out
