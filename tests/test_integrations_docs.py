"""Every ``python`` block of docs/integrations.md runs, in order, on a tiny random model, and every
``bash`` command runs as written.

Blocks whose first line is ``# requires: LIB`` run only where LIB is installed; elsewhere they are
compiled, so a syntax slip still fails. The commands run with no GPU visible and without ``--device``
(the CPU-only case of issue 27), with only the model name pointed at the tiny model and the hub tasks
at a local exported one; the hint that ``data export-lm-eval`` prints runs too.
"""

from __future__ import annotations

import importlib.util
import json
import linecache
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from culture_neurons.attribution.scoretable import ScoreTable
from culture_neurons.models.adapters import get_adapter
from culture_neurons.selection import NeuronSet
from tests.tiny import build_tokenizer, tiny_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def prepare(folder: Path) -> Path:
    """A tiny model folder, a NeuronSet and a ScoreTable with the file names the recipes use."""
    model = tiny_model("llama")
    model.save_pretrained(folder / "tiny")
    build_tokenizer().save_pretrained(folder / "tiny")
    adapter = get_adapter(model)
    NeuronSet.from_columns(
        ["mlp.gate"] * 6 + ["attn.q"] * 2,
        [0, 0, 0, 1, 1, 1, 0, 1],
        [1, 5, 9, 2, 4, 8, 3, 17],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
        kind="general",
        num_layers=adapter.num_layers,
        widths=adapter.widths,
    ).save(folder / "general.json")
    gen = torch.Generator().manual_seed(0)
    scores = {s: torch.randn(adapter.num_layers, w, 2, generator=gen) for s, w in adapter.widths.items()}
    ScoreTable(
        scores,
        torch.tensor([3, 4]),
        torch.tensor([1.0, 2.0], dtype=torch.float64),
        ["Japan", "Spain"],
        {"dataset": "blend"},
    ).save(folder / "blend.safetensors")
    return folder / "tiny"


def test_the_doc_has_the_four_recipes():
    text = DOC.read_text(encoding="utf-8")
    for heading in ("## lm-evaluation-harness", "## pandas", "## TransformerLens", "## nnsight"):
        assert heading in text
    assert len(blocks()) >= 5


@pytest.mark.integration
def test_every_python_recipe_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_dir = prepare(tmp_path)
    namespace: dict = {}
    ran = []
    for i, code in enumerate(blocks()):
        first = code.splitlines()[0].strip()
        needs = first.removeprefix("# requires:").strip() if first.startswith("# requires:") else None
        if i == 0:
            assert 'MODEL = "smollm2-135m-instruct"' in code
            code = code.replace('"smollm2-135m-instruct"', repr(str(model_dir)))
        name = f"{DOC.name} block {i}"
        # nnsight (0.8+) reads a trace's `with` block from its source file; give the block one, as a file would
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        compiled = compile(code, name, "exec")
        if needs and importlib.util.find_spec(needs) is None:
            continue
        exec(compiled, namespace)
        ran.append(i)
    assert 0 in ran and len(ran) >= 3
    assert list(namespace["frame"].columns) == ["site", "layer", "index", "score", "hf_module", "channel", "tl_hook"]
    assert (tmp_path / "general.parquet").is_file()
    assert len(namespace["top"]) == 10 and namespace["top"]["tl_hook"].str.startswith("blocks.").all()
    if importlib.util.find_spec("lm_eval") is not None:
        assert set(namespace["accuracy"]) == {"original", "suppressed"}
        assert all(0.0 <= v <= 1.0 for v in namespace["accuracy"].values())


BASH = re.compile(r"```bash\n(.*?)```", re.S)
LOCAL_TASK = "cn_demo_culture_heldout_cloze"
PROGRAMS = {
    "culture-neurons": ["-m", "culture_neurons"],
    "culture-neurons-lm-eval": ["-m", "culture_neurons.integrations.lm_eval_cli"],
    "lm_eval": ["-m", "lm_eval"],
}


def bash_commands() -> list[list[str]]:
    """Every command of the page's ``bash`` blocks, continuation lines joined, as argument lists."""
    out = []
    for block in BASH.findall(DOC.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                out.append(shlex.split(line))
    return out


def as_run_here(argv: list[str], model_dir: Path) -> list[str]:
    """The documented command with only the model name pointed at the tiny model and hub tasks at the
    local task (this machine has no hub access); every other argument as written, no --device added."""
    argv = [a.replace("pretrained=smollm2-135m-instruct", f"pretrained={model_dir}") for a in argv]
    argv = [
        a.replace("pretrained=MODEL[,neurons=SET.json,op=suppress]", f"pretrained={model_dir},neurons=general.json")
        for a in argv
    ]
    if "--tasks" in argv:
        i = argv.index("--tasks") + 1
        if argv[i] != LOCAL_TASK:
            argv[i] = LOCAL_TASK
            argv += ["--include_path", "tasks"]
    return [sys.executable, *PROGRAMS[argv[0]], *argv[1:]]


def run_here(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # No GPU visible, whatever the machine: the documented commands must run where lm-eval's hf runs.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (argv, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def lm_eval_reads_entry_points() -> bool:
    """Whether the installed lm-eval finds ``--model culture-neurons`` without our registration."""
    code = "from lm_eval.api.registry import get_model; get_model('culture-neurons')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300).returncode == 0


def test_the_page_has_the_three_lm_eval_commands():
    programs = [c[0] for c in bash_commands()]
    assert programs == ["lm_eval", "culture-neurons-lm-eval", "culture-neurons", "culture-neurons-lm-eval"]
    assert all("--device" not in c for c in bash_commands())  # the CPU-only case is the documented one


@pytest.mark.integration
def test_every_documented_lm_eval_command_runs_as_written_without_a_gpu(tmp_path):
    """The export, the commands after it and the hint the export prints, on a machine lm-eval sees no GPU on."""
    pytest.importorskip("lm_eval")
    model_dir = prepare(tmp_path)
    japan = NeuronSet.from_columns(
        ["mlp.gate"] * 2,
        [1, 1],
        [10, 11],
        kind="specific-Japan",
        num_layers=2,
        widths=get_adapter(tiny_model("llama")).widths,
    )
    japan.save(tmp_path / "specific-Japan.json")
    commands = bash_commands()
    export = run_here(as_run_here(commands[2], model_dir), tmp_path)
    hint = next(line for line in export.stdout.splitlines() if line.startswith("run it with: "))
    hinted = shlex.split(hint.removeprefix("run it with: "))
    assert hinted[:3] == ["culture-neurons-lm-eval", "--model", "culture-neurons"] and LOCAL_TASK in hinted
    for argv in (commands[3], hinted):
        out = run_here(as_run_here(argv, model_dir), tmp_path)
        assert LOCAL_TASK in out.stdout and "acc_norm" in out.stdout
    run_here(as_run_here(commands[1], model_dir), tmp_path)
    results = json.loads(next((tmp_path / "lm-eval-out").rglob("results_*.json")).read_text())
    info = results["config"]["culture_neurons"]
    want = NeuronSet.load(tmp_path / "general.json").union(japan)
    assert info["op"] == "enhance" and info["factor"] == 2 and info["n_neurons"] == len(want)
    if lm_eval_reads_entry_points():
        run_here(as_run_here(commands[0], model_dir), tmp_path)
