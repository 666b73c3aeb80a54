"""Shared builders and checks for the reliability tests: a tiny model kit and the one-line-error rule."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result

from tests.tiny import build_tokenizer, make_examples, tiny_model


def build_kit(root: Path) -> Path:
    """A tiny saved Llama, its examples, three score tables and a culture-general set under ``root``."""
    from culture_neurons.attribution.engine import score_examples
    from culture_neurons.selection import select_general

    tok = build_tokenizer()
    llama = tiny_model("llama", device="cpu")
    llama.save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    exs = make_examples(6)
    tables = {
        "ds": score_examples(llama, tok, exs, progress=False, dataset="demo"),
        "ctl": score_examples(llama, tok, exs, progress=False, control=True, dataset="demo-control"),
        "crc": score_examples(llama, tok, exs, progress=False, dataset="countryrc"),
    }
    for name, table in tables.items():
        table.save(root / f"{name}.safetensors")
    general = select_general([tables["ds"]], [tables["ctl"]], tables["crc"], t_mlp=0.05, t_attn=0.05)
    general.save(root / "general.json")
    write_jsonl(root / "e.jsonl", [e.to_dict() for e in exs])
    return root


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def invoke(argv: list) -> Result:
    """The real CLI, in-process."""
    from culture_neurons.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in argv])


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder``, relative (hidden temporaries included)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line_error(result: Result, pattern: str | None = None, code: int | None = None) -> str:
    """Non-zero exit, the last line is the error (matching ``pattern``), no traceback anywhere."""
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert lines, "no message at all"
    last = lines[-1]
    assert re.match(r"(error|Error): ", last) or last.startswith("interrupted"), result.output
    if pattern is not None:
        assert re.search(pattern, last), last
    return last
