"""Bad input at every entry point: one clear line naming the culprit, a non-zero exit, no traceback
(unless --debug), and nothing half-written.

Each case builds its bad input in a fresh folder, runs the real CLI in-process, and checks the
folder afterwards: only the files the case created may be there.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from culture_neurons.attribution.engine import score_examples
from culture_neurons.cli import cli
from culture_neurons.selection import select_general
from tests.tiny import build_tokenizer, make_examples, tiny_model


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A tiny saved model, a second model, and three score tables with a culture-general set."""
    root = tmp_path_factory.mktemp("kit")
    tok = build_tokenizer()
    llama = tiny_model("llama")
    llama.save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    qwen = tiny_model("qwen2")
    exs = make_examples(6)
    tables = {
        "ds": score_examples(llama, tok, exs, progress=False, dataset="demo"),
        "ctl": score_examples(llama, tok, exs, progress=False, control=True, dataset="demo-control"),
        "crc": score_examples(llama, tok, exs, progress=False, dataset="countryrc"),
        "other": score_examples(qwen, tok, exs, progress=False, control=True, dataset="demo-control"),
    }
    for name, table in tables.items():
        table.save(root / f"{name}.safetensors")
    general = select_general([tables["ds"]], [tables["ctl"]], tables["crc"], t_mlp=0.05, t_attn=0.05)
    general.save(root / "general.json")
    (root / "e.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in exs))
    return root


@dataclass
class Case:
    name: str
    make: Callable[[Path, Path], list[str]]  # (kit, work folder) -> argv; creates the bad input in work
    message: str  # regex the error line must match
    code: int = 2


def jsonl(work: Path, lines: list[str], name: str = "e.jsonl", raw: bytes | None = None) -> Path:
    path = work / name
    path.write_bytes(raw if raw is not None else ("\n".join(lines) + "\n").encode())
    return path


def score(kit, work, examples, *extra):
    return [
        "score",
        "-m",
        str(kit / "llama"),
        "-e",
        str(examples),
        "-o",
        str(work / "out" / "s.safetensors"),
        "-q",
        *extra,
    ]


def good_lines(kit) -> list[str]:
    return (kit / "e.jsonl").read_text().splitlines()


def truncated(kit, work, name="ds"):
    data = (kit / f"{name}.safetensors").read_bytes()
    path = work / "cut.safetensors"
    path.write_bytes(data[: len(data) // 3])
    return path


def nan_table(kit, work):
    from culture_neurons import ScoreTable

    table = ScoreTable.load(kit / "ds.safetensors")
    from safetensors.torch import save_file

    tensors = {f"scores/{s}": t for s, t in table.scores.items()}
    tensors["scores/mlp.gate"] = tensors["scores/mlp.gate"].clone()
    tensors["scores/mlp.gate"][0, 0, 0] = float("nan")
    tensors.update(counts=table.counts, prob_sums=table.prob_sums)
    meta = {
        **table.meta,
        "format": "culture-neurons/score-table",
        "format_version": 1,
        "groups": table.groups,
        "sites": table.sites,
    }
    path = work / "nan.safetensors"
    save_file(tensors, str(path), metadata={"culture_neurons": json.dumps(meta)})
    return path


def dropped_group(kit, work):
    from culture_neurons import ScoreTable

    table = ScoreTable.load(kit / "ctl.safetensors")
    keep = [0, 1]  # Spain is missing from this control table
    sub = ScoreTable(
        {s: t[..., keep] for s, t in table.scores.items()},
        table.counts[keep],
        table.prob_sums[keep],
        table.groups[:2],
        {**table.meta, "example_ids": None},
    )
    sub.meta.pop("example_ids")
    return sub.save(work / "ctl-two.safetensors")


def out_of_range(kit, work):
    data = json.loads((kit / "general.json").read_text())
    data["neurons"][0]["index"] = 10_000
    path = work / "bad-set.json"
    path.write_text(json.dumps(data))
    return path


def select_general_args(kit, work, ds=None, ctl=None, crc=None):
    return [
        "select",
        "general",
        "-d",
        str(ds or kit / "ds.safetensors"),
        "-c",
        str(ctl or kit / "ctl.safetensors"),
        "--countryrc",
        str(crc or kit / "crc.safetensors"),
        "-o",
        str(work / "out" / "general.json"),
    ]


def evaluate_args(kit, work, bench, neurons=None):
    argv = [
        "evaluate",
        "-m",
        str(kit / "llama"),
        "-b",
        str(bench),
        "-o",
        str(work / "out" / "eval"),
        "--n-boot",
        "10",
        "-q",
    ]
    return argv + (["--neurons", str(neurons)] if neurons else [])


def unreadable_out(kit, work):
    blocker = work / "not-a-folder"
    blocker.write_text("")
    return ["score", "-m", str(kit / "llama"), "-e", str(kit / "e.jsonl"), "-o", str(blocker / "s.safetensors"), "-q"]


def bloom_model(kit, work):
    import transformers as tf

    torch.manual_seed(0)
    path = work / "bloom"
    tf.BloomForCausalLM(tf.BloomConfig(vocab_size=320, hidden_size=32, n_layer=1, n_head=2)).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def duplicate_id_benchmark(kit, work):
    folder = work / "cb"
    folder.mkdir()
    header = (
        "data_idx,question_idx,prompt_question,prompt_option_a,prompt_option_b,prompt_option_c,prompt_option_d,"
        "answer,country\n"
    )
    row = '7,q1,"Which food is common?",rice,bread,tacos,sushi,A,Japan\n'
    (folder / "CulturalBench-Easy.csv").write_text(header + row + row.replace("rice", "tea"))
    return [
        "data",
        "export",
        "culturalbench-easy",
        "--data-dir",
        str(folder),
        "--split",
        "all",
        "--out",
        str(work / "out" / "cb.jsonl"),
    ]


def missing_column_benchmark(kit, work):
    folder = work / "cb"
    folder.mkdir()
    (folder / "CulturalBench-Easy.csv").write_text("data_idx,question,answer\n1,Which?,A\n")
    return ["data", "export", "culturalbench-easy", "--data-dir", str(folder), "--out", str(work / "out" / "cb.jsonl")]


def run_config(kit, work, text: str, *extra: str) -> list[str]:
    """``culture-neurons run`` on a config written into the work folder (its run directory is work/out/run)."""
    path = work / "run.toml"
    path.write_text(f'[run]\nout = "{(work / "out" / "run").as_posix()}"\n' + text)
    return ["run", str(path), "-q", *extra]


def model_line(kit) -> str:
    return f'[model]\nname = "{(kit / "llama").as_posix()}"\n'


CASES = [
    Case(
        "malformed JSONL line",
        lambda k, w: score(k, w, jsonl(w, good_lines(k)[:2] + ['{"id": "x", "prompt": "oops'])),
        r"e\.jsonl:3: malformed JSON",
    ),
    Case(
        "missing field",
        lambda k, w: score(k, w, jsonl(w, good_lines(k) + [json.dumps({"id": "y", "prompt": "Q", "group": "Japan"})])),
        r"e\.jsonl:7: missing required field\(s\) answer",
    ),
    Case(
        "wrong field type",
        lambda k, w: score(k, w, jsonl(w, [json.dumps({"id": "y", "prompt": ["Q"], "answer": "A", "group": "Japan"})])),
        r"e\.jsonl:1: field 'prompt' must be a string",
    ),
    Case(
        "duplicate example id",
        lambda k, w: score(k, w, jsonl(w, good_lines(k) + good_lines(k)[:1])),
        r"e\.jsonl:7: duplicate id 'ex0'",
    ),
    Case(
        "label that tokenises to nothing",
        lambda k, w: score(
            k, w, jsonl(w, [json.dumps({"id": "blank", "prompt": "Q?", "answer": " \t", "group": "Japan"})])
        ),
        r"example 'blank': the answer is empty",
    ),
    Case(
        "label merged into the prompt",
        lambda k, w: score(
            k,
            w,
            jsonl(w, [json.dumps({"id": "glued", "prompt": "Which? Ans", "answer": "wer", "group": "g"})]),
            "--no-chat-template",
        ),
        r"example 'glued': continuation 'wer' has no first token of its own",
    ),
    Case("not UTF-8", lambda k, w: score(k, w, jsonl(w, [], raw=b'{"id": "\xff\xfe"}\n')), r"e\.jsonl: not UTF-8"),
    Case("empty examples file", lambda k, w: score(k, w, jsonl(w, [], raw=b"\n\n")), r"e\.jsonl: no examples found"),
    Case("examples file missing", lambda k, w: score(k, w, w / "nope.jsonl"), r"nope\.jsonl does not exist"),
    Case(
        "model path missing",
        lambda k, w: [
            "score",
            "-m",
            str(w / "no-model"),
            "-e",
            str(k / "e.jsonl"),
            "-o",
            str(w / "out" / "s.safetensors"),
        ],
        r"could not load model .*no-model",
    ),
    Case(
        "unknown architecture",
        lambda k, w: [
            "score",
            "-m",
            str(bloom_model(k, w)),
            "-e",
            str(k / "e.jsonl"),
            "-o",
            str(w / "out" / "s.safetensors"),
            "-q",
        ],
        r"no adapter knows this model \(model_type='bloom'.*--site-map",
    ),
    Case(
        "site map with an unknown site",
        lambda k, w: score(
            k,
            w,
            k / "e.jsonl",
            "--site-map",
            str(jsonl(w, [], "m.json", b'{"layers": "model.layers", "sites": {"mlp.z": {"module": "mlp.up_proj"}}}')),
        ),
        r"m\.json: sites\.mlp\.z is not a site",
    ),
    Case(
        "unknown site requested",
        lambda k, w: score(k, w, k / "e.jsonl", "--sites", "mlp.gate,attn.o"),
        r"site\(s\) attn\.o not in this llama model",
    ),
    Case("unwritable output folder", unreadable_out, r"cannot create output folder .*not-a-folder"),
    Case(
        "truncated score table",
        lambda k, w: select_general_args(k, w, ds=truncated(k, w)),
        r"cut\.safetensors is not a readable safetensors file \(truncated or corrupt\?\)",
    ),
    Case(
        "not a score table",
        lambda k, w: select_general_args(k, w, ds=k / "general.json"),
        r"general\.json is not a readable safetensors file",
    ),
    Case(
        "score table of another model",
        lambda k, w: select_general_args(k, w, ctl=k / "other.safetensors"),
        r"another model",
    ),
    Case(
        "NaN in a score table",
        lambda k, w: select_general_args(k, w, ds=nan_table(k, w)),
        r"nan\.safetensors: scores/mlp\.gate contains NaN",
    ),
    Case(
        "country missing from one table",
        lambda k, w: [
            "select",
            "specific",
            "-d",
            str(k / "ds.safetensors"),
            "-c",
            str(dropped_group(k, w)),
            "--countryrc",
            str(k / "crc.safetensors"),
            "--country",
            "Spain",
            "-o",
            str(w / "out" / "s.json"),
        ],
        r"Spain",
    ),
    Case(
        "neuron set with out-of-range indices",
        lambda k, w: evaluate_args(k, w, k / "e.jsonl", out_of_range(k, w)),
        r"out-of-range",
    ),
    Case(
        "neuron set that is not JSON",
        lambda k, w: evaluate_args(k, w, k / "e.jsonl", jsonl(w, [], "set.json", b"{not json")),
        r"set\.json",
    ),
    Case(
        "benchmark file missing",
        lambda k, w: evaluate_args(k, w, w / "missing.jsonl"),
        r"benchmark file .*missing\.jsonl does not exist",
    ),
    Case(
        "benchmark file with duplicate ids",
        duplicate_id_benchmark,
        r"duplicate item id .*CulturalBench-Easy\.csv:2 and .*CulturalBench-Easy\.csv:3",
    ),
    Case(
        "benchmark file with wrong columns",
        missing_column_benchmark,
        r"CulturalBench-Easy\.csv.*(column|prompt_question)",
    ),
    Case(
        "unknown benchmark", lambda k, w: ["data", "export", "blendd", "--out", str(w / "out" / "x.jsonl")], r"blendd"
    ),
    Case(
        "reference neuron JSON with bad rows",
        lambda k, w: [
            "select",
            "import",
            str(jsonl(w, [], "ref.json", b'{"top_neurons": [{"module_name": "mlp.gate_proj"}]}')),
            "-o",
            str(w / "out" / "n.json"),
        ],
        r"ref\.json",
    ),
    Case(
        "config: unknown key",
        lambda k, w: run_config(k, w, model_line(k) + "[select.general]\nt_mpl = 0.01\n"),
        r"unknown config key 'select\.general\.t_mpl'; did you mean 't_mlp'\?",
    ),
    Case(
        "config: wrong type",
        lambda k, w: run_config(k, w, model_line(k) + '[score]\nbatch_size = "eight"\n'),
        r"config key 'score\.batch_size' must be an integer, got 'eight'",
    ),
    Case(
        "config: missing model",
        lambda k, w: run_config(k, w, "[score]\nbatch_size = 4\n"),
        r"config key 'model\.name' is required",
    ),
    Case("config: not TOML", lambda k, w: run_config(k, w, model_line(k) + "[score\n"), r"run\.toml: not valid TOML"),
    Case(
        "config: value out of range",
        lambda k, w: run_config(k, w, model_line(k), "--set", "select.general.t_mlp=3"),
        r"config key 'select\.general\.t_mlp' is a fraction and must lie in \[0, 1\], got 3",
    ),
    Case("config file missing", lambda k, w: ["run", str(w / "nope.toml")], r"config file .*nope\.toml does not exist"),
    Case("report of a folder that is not a run", lambda k, w: ["report", str(k)], r"has no manifest\.json"),
    Case(
        "train: budget of 0",
        lambda k, w: [
            "train",
            "-m",
            str(k / "llama"),
            "--neurons",
            str(k / "general.json"),
            "--budget",
            "0",
            "-d",
            str(k / "e.jsonl"),
            "-o",
            str(w / "out" / "ft"),
        ],
        r"budget",
    ),
    Case(
        "train: unknown dataset",
        lambda k, w: [
            "train",
            "-m",
            str(k / "llama"),
            "--neurons",
            str(k / "general.json"),
            "-d",
            "qnlii",
            "-o",
            str(w / "out" / "ft"),
        ],
        r"qnlii",
    ),
    Case(
        "disk full while writing",
        lambda k, w: ["__enospc__", *score(k, w, k / "e.jsonl")],
        r"No space left on device",
        code=1,
    ),
]


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, kit, tmp_path, monkeypatch):
    argv = case.make(kit, tmp_path)
    if argv[0] == "__enospc__":
        argv = argv[1:]
        import safetensors.torch

        def full(*_a, **_k):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(safetensors.torch, "save_file", full)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, argv)
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == case.code, result.output
    assert lines and lines[-1].startswith("error: "), result.output
    assert re.search(case.message, lines[-1]), lines[-1]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    left = _snapshot(tmp_path) - before - {"out"}
    assert not left, f"left behind: {sorted(left)}"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_debug_shows_the_traceback(kit, tmp_path):
    result = CliRunner().invoke(cli, ["--debug", *score(kit, tmp_path, jsonl(tmp_path, ["{broken"]))])
    assert result.exit_code == 2 and "Traceback" in result.output


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf_jsonl_work(kit, tmp_path, variant):
    text = (kit / "e.jsonl").read_text()
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")
    raw = ("\ufeff" if "bom" in variant else "") + text
    path = tmp_path / "e.jsonl"
    path.write_bytes(raw.encode())
    result = CliRunner().invoke(cli, score(kit, tmp_path, path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "s.safetensors").is_file()
