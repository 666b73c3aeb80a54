"""The tiny NLU files of ``tests/data/nlu_files/`` (published formats), and their rows in each hub dataset's layout."""

from __future__ import annotations

import json
from pathlib import Path

FILES = Path(__file__).parent / "nlu_files"


def read_rows(path: Path) -> list[dict]:
    """The objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def flat_ai2(row: dict, stem_key: str = "question") -> dict:
    """An AI2 row in the hub's layout: a flat question and ``choices{text[], label[]}``."""
    q = row["question"]
    choices = {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]}
    return {"id": row["id"], stem_key: q["stem"], "choices": choices, "answerKey": row["answerKey"]}


def hub_rows(name: str) -> list[dict]:
    """The tiny file's rows as the benchmark's hub dataset returns them."""
    if name in ("arc-easy", "arc-challenge"):
        stem = "ARC-Easy" if name == "arc-easy" else "ARC-Challenge"
        return [flat_ai2(r) for r in read_rows(FILES / name.replace("-", "_") / f"{stem}-Test.jsonl")]
    if name == "openbookqa":
        return [flat_ai2(r, "question_stem") for r in read_rows(FILES / "openbookqa" / "test.jsonl")]
    if name == "piqa":
        labels = (FILES / "piqa" / "valid-labels.lst").read_text().split()
        return [{**r, "label": int(x)} for r, x in zip(read_rows(FILES / "piqa" / "valid.jsonl"), labels)]
    if name == "hellaswag":  # the hub's labels are strings
        return [{**r, "label": str(r["label"])} for r in read_rows(FILES / "hellaswag" / "hellaswag_val.jsonl")]
    if name == "winogrande":  # the hub's rows have no qID
        return [{k: v for k, v in r.items() if k != "qID"} for r in read_rows(FILES / "winogrande" / "dev.jsonl")]
    return read_rows(FILES / "boolq" / "dev.jsonl")
