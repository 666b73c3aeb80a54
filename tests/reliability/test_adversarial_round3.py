"""Issue 27, section 7: bad input for each surface the previous round added.

``culture-neurons validate`` (every option, missing and corrupt inputs, tables, sets and cached fold
tables of another model), ``culture-neurons-lm-eval`` (unknown ``model_args`` keys, a NeuronSet of
another model, a bad ``op`` or ``factor``), the exports (``data export``, ``data export-lm-eval``,
``select export``) and ``score --recompute``. Each case must end in one ``error:`` line that names the
culprit, and nothing already written may change: inputs and earlier outputs keep their bytes, no
half-written file and no empty output folder is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.reliability.kit import assert_one_line_error, invoke
from tests.tiny import build_tokenizer, tiny_config, tiny_model
from tests.validity_helpers import choice_examples

VALIDITY_FAST = ["--analyses", "stability", "--t-mlp", "0.1", "--t-attn", "0.05", "--random-seeds", "1"]
VALIDITY_FAST += ["--n-boot", "20", "-q"]


def contents(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder): what must not change."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def empty_folders(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir() and not any(p.iterdir())]


@pytest.fixture(scope="module")
def kit3(tmp_path_factory) -> Path:
    """A saved tiny model, a second model of another family and a third of another shape; examples,
    control tables of each, sets of each, a run directory and garbage files."""
    from culture_neurons.attribution.engine import ScoringOptions, score_examples
    from culture_neurons.data.example import write_examples
    from culture_neurons.models.adapters import get_adapter
    from culture_neurons.models.loading import load_model
    from culture_neurons.selection import NeuronSet, select_general

    root = tmp_path_factory.mktemp("kit3")
    tok = build_tokenizer(chat_template=False)
    for name, model in {
        "model": tiny_model("llama", seed=5, device="cpu"),
        "other": tiny_model("qwen2", seed=1),
    }.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    config = tiny_config("llama")
    config.num_hidden_layers = 3
    torch.manual_seed(0)
    import transformers

    wide = transformers.AutoModelForCausalLM.from_config(config).eval()
    wide.save_pretrained(root / "shape")
    tok.save_pretrained(root / "shape")
    ident, ctl = choice_examples(9), choice_examples(9, control=True, dataset="demo-control")
    write_examples(root / "ident.jsonl", ident)
    write_examples(root / "control.jsonl", ctl)
    write_examples(root / "cult.jsonl", choice_examples(6, templates=("cloze",), split="heldout", dataset="cult"))
    nlu = choice_examples(6, groups=("nlu",), templates=("cloze",), split="heldout", dataset="nlu")
    write_examples(root / "nlu.jsonl", nlu)
    opts = ScoringOptions(target="choice", chat_template=False, batch_size=4)
    tables = {}
    for name in ("model", "other", "shape"):
        model, _ = load_model(root / name, device="cpu", progress=False)
        tables[name] = score_examples(model, tok, ctl, options=opts, progress=False, control=True)
        tables[name].save(root / f"ctl-{name}.safetensors")
        adapter = get_adapter(model)
        NeuronSet.from_columns(
            ["mlp.gate"], [adapter.num_layers - 1], [0], num_layers=adapter.num_layers, widths=adapter.widths
        ).save(root / f"set-{name}.json")
    data = (root / "ctl-model.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (root / "garbage.safetensors").write_bytes(b"\x00not a table")
    lines = (root / "ident.jsonl").read_text().splitlines()
    (root / "truncated.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:30])
    (root / "garbage.jsonl").write_text("this is not json\n")
    (root / "empty.jsonl").write_text("")
    (root / "garbage.json").write_text("{not json")
    (root / "truncated.json").write_text((root / "set-model.json").read_text()[:40])
    (root / "afile").write_text("a plain file\n")
    # A run directory, scored on the loaded model as `culture-neurons run` scores it.
    run = root / "run"
    for sub in ("examples", "scores", "neurons"):
        (run / sub).mkdir(parents=True)
    model, _ = load_model(root / "model", device="cpu", progress=False)
    write_examples(run / "examples" / "score-demo.jsonl", ident)
    write_examples(run / "examples" / "control-demo-control.jsonl", ctl)
    write_examples(run / "examples" / "eval-cult.jsonl", choice_examples(6, templates=("cloze",), dataset="cult"))
    table = score_examples(model, tok, ident, options=opts, progress=False)
    table.save(run / "scores" / "score-demo.safetensors")
    tables["model"].save(run / "scores" / "control-demo-control.safetensors")
    select_general([table], [tables["model"]], None, t_mlp=0.1, t_attn=0.05).save(run / "neurons" / "general.json")
    (run / "manifest.json").write_text(json.dumps({"config": {"model": {"name": str(root / "model")}}}))
    return root


def explicit(k: Path) -> list:
    return [
        "validate",
        "--model",
        k / "model",
        "--identification",
        k / "ident.jsonl",
        "--control-file",
        k / "control.jsonl",
        "--culture-file",
        f"cult={k / 'cult.jsonl'}",
        "--nlu-file",
        f"nlu={k / 'nlu.jsonl'}",
        *VALIDITY_FAST,
    ]


def swap(argv: list, option: str, value) -> list:
    """``argv`` with ``option``'s value replaced."""
    out = list(argv)
    out[out.index(option) + 1] = value
    return out


# -- validate: options ------------------------------------------------------------------------------

VALIDATE_OPTIONS = [
    (["--folds", "0"], r"folds must be at least 2, got 0"),
    (["--folds", "1"], r"folds must be at least 2, got 1"),
    (["--folds", "abc"], r"'--folds': 'abc' is not a valid integer"),
    (["--folds", "1000"], r"fewer than 1000 questions"),
    (["--random-seeds", "0"], r"'--random-seeds': 0 is not in the range"),
    (["--random-seeds", "-2"], r"'--random-seeds': -2 is not in the range"),
    (["--sweep", "a,b"], r"--sweep: expected comma-separated numbers, got 'a,b'"),
    (["--sweep", ","], r"--sweep: names no number"),
    (["--sweep", "-1"], r"t_mlp_sweep values must be fractions in \(0, 1\]"),
    (["--sweep", "nan"], r"--sweep: values must be finite numbers"),
    (["--sweep", "200"], r"t_mlp_sweep values must be fractions in \(0, 1\]"),
    (["--factors", "x"], r"--factors: expected comma-separated numbers"),
    (["--factors", "nan"], r"--factors: values must be finite numbers"),
    (["--factors", "1,inf"], r"--factors: values must be finite numbers"),
    (["--factors", ","], r"--factors: names no number"),
    (["--faith", "0"], r"'--faith': 0 is not in the range x>=1"),
    (["--faith", "-3"], r"'--faith': -3 is not in the range"),
    (["--faith-examples", "0"], r"'--faith-examples': 0 is not in the range x>=1"),
    (["--n-boot", "-5"], r"'--n-boot': -5 is not in the range x>=0"),
    (["--t-mlp", "-1"], r"t_mlp must be a fraction between 0 and 1"),
    (["--t-mlp", "2"], r"t_mlp must be a fraction between 0 and 1"),
    (["--t-mlp", "nan"], r"'--t-mlp': 'nan' is not a finite number"),
    (["--t-attn", "5"], r"t_attn must be a fraction between 0 and 1"),
    (["--batch-size", "0"], r"'--batch-size': 0 is not in the range x>=1"),
    (["--batch-size", "-1"], r"'--batch-size': -1 is not in the range"),
    (["--eval-batch-size", "0"], r"'--eval-batch-size': 0 is not in the range x>=1"),
    (["--analyses", "bogus"], r"unknown validity analysis 'bogus'; choose from sensitivity"),
    (["--analyses", ","], r"--analyses names nothing"),
    (["--device", "tpu9"], r"unknown device 'tpu9'"),
    (["--dtype", "int8"], r"unknown dtype 'int8'"),
    (["--max-per-group", "-1"], r"'--max-per-group': -1 is not in the range x>=0"),
    (["--heldout-per-group", "-1"], r"'--heldout-per-group': -1"),
    (["--nlu-limit", "-1"], r"'--nlu-limit': -1"),
    (["--countryrc-per-group", "-2"], r"'--countryrc-per-group': -2"),
    (["--max-per-group", "3"], r"--max-per-group does not apply with --identification"),
    (["--dataset", "blend"], r"--dataset does not apply with --identification"),
    (["--data-dir", "."], r"give one of RUN_DIR, --data-dir and --identification"),
    (["--culture-file", "=cult.jsonl"], r"benchmark file '=cult.jsonl': give name=path"),
]


@pytest.mark.parametrize(("extra", "pattern"), VALIDATE_OPTIONS, ids=[" ".join(e) for e, _ in VALIDATE_OPTIONS])
def test_validate_bad_option_values(kit3, tmp_path, extra, pattern):
    before = contents(kit3)
    result = invoke([*explicit(kit3), "--out", tmp_path / "v", *extra])
    assert_one_line_error(result, pattern)
    assert not (tmp_path / "v").exists()  # refused before anything was written
    assert contents(kit3) == before


# -- validate: missing and corrupt inputs, inputs of another model -----------------------------------

VALIDATE_INPUTS = [
    ("--identification", "missing.jsonl", r"missing\.jsonl does not exist"),
    ("--identification", "truncated.jsonl", r"truncated\.jsonl:6: malformed JSON"),
    ("--identification", "garbage.jsonl", r"garbage\.jsonl:1: malformed JSON"),
    ("--identification", "empty.jsonl", r"empty\.jsonl: no examples found"),
    ("--identification", "model", r"'--identification'.*is a directory"),
    ("--control-file", "garbage.jsonl", r"garbage\.jsonl:1: malformed JSON"),
    ("--control-table", "missing.safetensors", r"missing\.safetensors does not exist"),
    ("--control-table", "truncated.safetensors", r"truncated\.safetensors is not a readable safetensors file"),
    ("--control-table", "garbage.safetensors", r"garbage\.safetensors is not a readable safetensors file"),
    ("--control-table", "ctl-other.safetensors", r"control table 1 .* was scored on .*not on this model"),
    ("--control-table", "ctl-shape.safetensors", r"control table 1 .* was scored on .*not on this model"),
    ("--countryrc-table", "ctl-other.safetensors", r"the CountryRC table .* was scored on .*not on this model"),
    ("--countryrc-table", "truncated.safetensors", r"truncated\.safetensors is not a readable"),
    ("--nlu-table", "ctl-shape.safetensors", r"the NLU table .* was scored on .*not on this model"),
    ("--reference-set", "garbage.json", r"garbage\.json:1: malformed JSON"),
    ("--reference-set", "truncated.json", r"truncated\.json:\d+: malformed JSON"),
    ("--reference-set", "set-shape.json", r"reference set does not fit this model: .*3 layers"),
    ("--reference-set", "missing.json", r"missing\.json does not exist"),
    ("--culture-file", "x=missing.jsonl", r"missing\.jsonl does not exist"),
    ("--culture-file", "g=garbage.jsonl", r"garbage\.jsonl:1: malformed JSON"),
    ("--nlu-file", "missing.jsonl", r"missing\.jsonl does not exist"),
    ("--nlu-identification-file", "garbage.jsonl", r"garbage\.jsonl:1: malformed JSON"),
    ("--model", "missing-model", r"could not load model .*missing-model"),
]


@pytest.mark.parametrize(
    ("option", "name", "pattern"), VALIDATE_INPUTS, ids=[f"{o} {n}" for o, n, _ in VALIDATE_INPUTS]
)
def test_validate_bad_inputs(kit3, tmp_path, option, name, pattern):
    value = f"{name.split('=')[0]}={kit3 / name.split('=')[1]}" if "=" in name else kit3 / name
    argv = [*explicit(kit3), "--out", tmp_path / "v"]
    argv = swap(argv, option, value) if option in argv else [*argv, option, value]
    if option in ("--control-table",):  # tables instead of control examples
        i = argv.index("--control-file")
        del argv[i : i + 2]
    before = contents(kit3)
    assert_one_line_error(invoke(argv), pattern)
    assert contents(kit3) == before
    assert not (tmp_path / "v").exists() or empty_folders(tmp_path / "v") == []


def run_dir_copy(kit3: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(kit3 / "run", run)
    return run


def _write(rel: str, data: bytes):
    return lambda run: (run / rel).write_bytes(data)


RUN_DIR_CASES = [
    ("manifest garbage", _write("manifest.json", b"{oops"), [], r"manifest\.json: not valid JSON"),
    ("manifest names no model", _write("manifest.json", b"{}"), [], r"no model: pass --model"),
    (
        "control table missing",
        lambda r: (r / "scores/control-demo-control.safetensors").unlink(),
        [],
        r"control-demo-control\.safetensors does not exist",
    ),
    (
        "control table truncated",
        _write("scores/control-demo-control.safetensors", b"\x08" * 100),
        [],
        r"control-demo-control\.safetensors is not a readable safetensors file",
    ),
    (
        "score table garbage",
        _write("scores/score-demo.safetensors", b"xx"),
        [],
        r"score-demo\.safetensors is not a readable safetensors file",
    ),
    (
        "score examples garbage",
        _write("examples/score-demo.jsonl", b"garbage\n"),
        [],
        r"score-demo\.jsonl:1: malformed JSON",
    ),
    ("general set garbage", _write("neurons/general.json", b"{"), [], r"general\.json:1: malformed JSON"),
    ("general set of another model", None, [], r"reference set does not fit this model"),
    ("control table of another model", None, [], r"control table 1 .* not on this model"),
    ("--model of another model", None, ["--model", "other"], r"control table 1 .* not on this model"),
    ("with --identification too", None, ["--identification", "ident.jsonl"], r"give one of RUN_DIR"),
    ("with --max-per-group", None, ["--max-per-group", "3"], r"--max-per-group does not apply with RUN_DIR"),
    (
        "with --reference-set",
        None,
        ["--reference-set", "set-model.json"],
        r"--reference-set does not apply with RUN_DIR",
    ),
]


@pytest.mark.parametrize(("name", "damage", "extra", "pattern"), RUN_DIR_CASES, ids=[c[0] for c in RUN_DIR_CASES])
def test_validate_bad_run_directories(kit3, tmp_path, name, damage, extra, pattern):
    run = run_dir_copy(kit3, tmp_path)
    if name == "general set of another model":
        shutil.copy(kit3 / "set-shape.json", run / "neurons" / "general.json")
    elif name == "control table of another model":
        shutil.copy(kit3 / "ctl-shape.safetensors", run / "scores" / "control-demo-control.safetensors")
    elif damage is not None:
        damage(run)
    (run / "validity").mkdir()
    (run / "validity" / "summary.json").write_text('{"earlier": true}\n')  # an earlier result, to be kept
    before = contents(run)
    extra = [kit3 / e if (kit3 / e).exists() else e for e in extra]
    assert_one_line_error(invoke(["validate", run, *VALIDITY_FAST, *extra]), pattern)
    assert contents(run) == before


def test_validate_run_directory_that_does_not_exist_or_is_no_run(kit3, tmp_path):
    assert_one_line_error(
        invoke(["validate", tmp_path / "nope", *VALIDITY_FAST]), r"run directory .*nope does not exist"
    )
    assert_one_line_error(invoke(["validate", kit3 / "model", *VALIDITY_FAST]), r"is not a run directory")


def test_validate_benchmark_names_are_checked_before_any_file(kit3, tmp_path):
    base = ["validate", "--model", kit3 / "model", "--data-dir", kit3 / "model", "--out", tmp_path / "v", "--quick"]
    for option, pattern in (
        ("--dataset", r"unknown benchmark 'bogus'"),
        ("--control", r"--control: unknown benchmark 'bogus'"),
        ("--nlu", r"--nlu: unknown benchmark 'bogus'"),
        ("--culture", r"--culture: unknown benchmark 'bogus'"),
    ):
        assert_one_line_error(invoke([*base, option, "bogus"]), pattern)
    assert_one_line_error(invoke([*base, "--culture", ","]), r"--culture names nothing")
    assert_one_line_error(invoke([*base, "--control-table", kit3 / "ctl-model.safetensors"]), r"does not apply")
    assert not (tmp_path / "v").exists()


def test_validate_refuses_fold_tables_of_another_model_and_keeps_them(kit3, tmp_path):
    """A second run on another model into the same --out would have reused the first model's cells."""
    out = tmp_path / "v"
    assert invoke([*explicit(kit3), "--out", out]).exit_code == 0
    before = contents(out)
    other = swap(explicit(kit3), "--model", kit3 / "other")
    assert_one_line_error(
        invoke([*other, "--out", out]), r"fold0-.*\.safetensors \(left by an earlier validity run\) was scored on"
    )
    assert contents(out) == before


def test_validate_caches_no_evaluation_across_models(kit3, tmp_path):
    """With the cells removed, the other model re-evaluates every condition instead of reading the first's."""
    out = tmp_path / "v"
    argv = swap(explicit(kit3), "--analyses", "specificity")  # the analysis that evaluates conditions
    assert invoke([*argv, "--out", out]).exit_code == 0
    first = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out / "folds")
    other = swap(argv, "--model", kit3 / "other")
    assert invoke([*other, "--out", out]).exit_code == 0
    second = json.loads((out / "summary.json").read_text())
    assert first["evaluations"] > 0 and second["evaluations"] == first["evaluations"]


def test_validate_damaged_cell_table_is_named_and_the_others_kept(kit3, tmp_path):
    out = tmp_path / "v"
    assert invoke([*explicit(kit3), "--out", out]).exit_code == 0
    cell = sorted((out / "folds").glob("fold0-*.safetensors"))[0]
    cell.write_bytes(cell.read_bytes()[:64])
    before = contents(out)
    last = assert_one_line_error(invoke([*explicit(kit3), "--out", out]), rf"{cell.name} is not a readable")
    assert "delete it to score that cell again" in last
    assert contents(out) == before


def test_validate_out_that_cannot_be_written(kit3, tmp_path):
    assert_one_line_error(invoke([*explicit(kit3), "--out", kit3 / "afile"]), r"'--out'.*is a file")
    assert_one_line_error(invoke([*explicit(kit3), "--out", kit3 / "afile" / "v"]), r"afile")
    assert (kit3 / "afile").read_text() == "a plain file\n"


# -- exports ------------------------------------------------------------------------------------------


@pytest.fixture
def outdir(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.jsonl").write_text("keep\n")
    (out / "tasks").mkdir()
    (out / "tasks" / "old.yaml").write_text("old task\n")
    (out / "afile").write_text("a plain file\n")
    return out


EXPORTS = {
    "data export": ["data", "export", "demo-culture", "--max-per-group", "2"],
    "data export-lm-eval": ["data", "export-lm-eval", "demo-culture", "--max-per-group", "2"],
}
EXPORT_CASES = [
    ("data export", ["--templates", "bogus", "--out", "existing.jsonl"], r"unknown template 'bogus'"),
    ("data export", ["--option", "nope=1", "--out", "existing.jsonl"], r"unknown option 'nope'"),
    ("data export", ["--model", "missing-model", "--out", "existing.jsonl"], r"could not load model"),
    ("data export", ["--out", "tasks"], r"'--out'.*is a directory"),
    ("data export", ["--out", "afile/x.jsonl"], r"afile is a file"),
    ("data export-lm-eval", ["--templates", "bogus", "--out", "tasks"], r"unknown template 'bogus'"),
    ("data export-lm-eval", ["--task", "../evil", "--out", "tasks"], r"task name '\.\./evil'"),
    ("data export-lm-eval", ["--out", "afile"], r"'--out'.*is a file"),
    ("data export-lm-eval", ["--out", "afile/t"], r"afile is a file"),
    ("data export-lm-eval", ["--templates", "bogus", "--out", "new/sub"], r"unknown template 'bogus'"),
]


@pytest.mark.parametrize(
    ("command", "extra", "pattern"), EXPORT_CASES, ids=[f"{c} {' '.join(e)}" for c, e, _ in EXPORT_CASES]
)
def test_exports_fail_in_one_line_and_touch_nothing(outdir, command, extra, pattern):
    extra = [str(outdir / e) if i and extra[i - 1] == "--out" else e for i, e in enumerate(extra)]
    before = contents(outdir)
    assert_one_line_error(invoke([*EXPORTS[command], *extra]), pattern)
    assert contents(outdir) == before  # the earlier outputs keep their bytes; no new file or folder


def test_lm_eval_export_writes_all_four_files_or_none(outdir, monkeypatch):
    """A write failing half way (a full disk on the third file) undoes the first two, new or overwritten."""
    import culture_neurons.data.lm_eval_export as export

    assert invoke([*EXPORTS["data export-lm-eval"], "--out", outdir / "tasks"]).exit_code == 0
    before = contents(outdir)
    real, calls = export.write_text_atomic, []

    def full_disk(path, text):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(export, "write_text_atomic", full_disk)
    for folder in ("tasks", "fresh"):
        calls.clear()
        result = invoke([*EXPORTS["data export-lm-eval"], "--max-per-group", "3", "--out", outdir / folder])
        assert_one_line_error(result, r"No space left on device")
        assert contents(outdir) == before  # the old export intact; no part of the new one, no empty folder


def test_lm_eval_export_checks_every_document_before_writing(outdir, monkeypatch):
    """Mixed prompt endings are refused before the data file and the loader are written (they were not)."""
    import dataclasses

    import culture_neurons.data.lm_eval_export as export

    real = export.build_examples

    def mixed(*a, **kw):
        def flip(prompt: str) -> str:  # the other ending: with trailing whitespace or without
            return prompt.rstrip() if prompt[-1:].isspace() else prompt + " "

        # Every other example, so the caps (applied after this) keep both endings.
        return [dataclasses.replace(e, prompt=flip(e.prompt)) if i % 2 else e for i, e in enumerate(real(*a, **kw))]

    monkeypatch.setattr(export, "build_examples", mixed)
    before = contents(outdir)
    result = invoke([*EXPORTS["data export-lm-eval"], "--out", outdir / "mixed"])
    assert_one_line_error(result, r"some prompts end in whitespace")
    assert contents(outdir) == before


SELECT_EXPORT_CASES = [
    ("garbage.json", "ref.json", r"garbage\.json:1: malformed JSON"),
    ("missing.json", "ref.json", r"missing\.json does not exist"),
    ("set-model.json", "set-model.json", r"is also the input NEURONS"),
    ("set-model.json", "tasks", r"'--out'.*is a directory"),
    ("set-model.json", "afile/ref.json", r"afile is a file"),
]


@pytest.mark.parametrize(
    ("neurons", "out", "pattern"), SELECT_EXPORT_CASES, ids=[f"{n} {o}" for n, o, _ in SELECT_EXPORT_CASES]
)
def test_select_export_bad_input_and_output(kit3, outdir, neurons, out, pattern):
    target = kit3 / out if out == neurons else outdir / out
    before, inputs = contents(outdir), contents(kit3)
    assert_one_line_error(invoke(["select", "export", kit3 / neurons, "--out", target]), pattern)
    assert contents(outdir) == before and contents(kit3) == inputs


# -- score --recompute -------------------------------------------------------------------------------


def score_argv(k: Path, out: Path, *extra) -> list:
    return ["score", "-m", k / "model", "-e", k / "ident.jsonl", "-o", out, "-q", "--target", "choice", *extra]


@pytest.mark.parametrize("method", ["ig", "ig-joint"])
def test_recompute_with_a_method_it_cannot_apply_to(kit3, outdir, method):
    """Refused before the model loads (a missing model is not even looked at), the old output kept."""
    (outdir / "t.safetensors").write_bytes(b"an earlier table")
    before = contents(outdir)
    argv = swap(score_argv(kit3, outdir / "t.safetensors", "--recompute", "--method", method), "-m", "no-such-model")
    assert_one_line_error(invoke(argv), rf"recompute applies to gxa and atp-mean; {method} ")
    assert contents(outdir) == before


def test_recompute_combined_with_other_options_gives_the_same_table(kit3, tmp_path):
    from culture_neurons.attribution.scoretable import ScoreTable

    for extra in (["--method", "atp-mean"], ["--sites", "mlp.gate,attn.q"], ["--control"], ["--checkpoint-every", "1"]):
        plain, again = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
        assert invoke(score_argv(kit3, plain, "--batch-size", "4", *extra)).exit_code == 0
        assert invoke(score_argv(kit3, again, "--batch-size", "4", "--recompute", *extra)).exit_code == 0
        a, b = ScoreTable.load(plain), ScoreTable.load(again)
        assert a.sites == b.sites
        for site in a.sites:
            assert torch.allclose(a.scores[site], b.scores[site], rtol=1e-5, atol=1e-7), (extra, site)


def test_recompute_with_bad_companions(kit3, outdir):
    before = contents(outdir)
    out = outdir / "existing.jsonl"
    for extra, pattern in (
        (["--sites", "mlp.nope"], r"site\(s\) mlp.nope not in this llama model"),
        (["--batch-size", "0"], r"'--batch-size': 0 is not in the range"),
        (["--device", "tpu9"], r"unknown device 'tpu9'"),
    ):
        assert_one_line_error(invoke(score_argv(kit3, out.with_suffix(".safetensors"), "--recompute", *extra)), pattern)
    assert_one_line_error(
        invoke(["score", "-m", kit3 / "model", "-e", kit3 / "ident.jsonl", "-o", kit3 / "ident.jsonl", "--recompute"]),
        r"is also the input --examples",
    )
    assert contents(outdir) == before


def test_recompute_through_a_site_map(kit3, tmp_path):
    """An adapter from a user's site map (not a built-in family) recomputes the layers it names."""
    from culture_neurons.attribution.scoretable import ScoreTable

    site_map = tmp_path / "sites.toml"
    site_map.write_text(
        'layers = "model.layers"\n[sites."mlp.gate"]\nmodule = "mlp.gate_proj"\n'
        '[sites."attn.v"]\nmodule = "self_attn.v_proj"\n'
    )
    tables = []
    for name, extra in (("a", []), ("b", ["--recompute"])):
        out = tmp_path / f"{name}.safetensors"
        assert invoke(score_argv(kit3, out, "--site-map", site_map, *extra)).exit_code == 0
        tables.append(ScoreTable.load(out))
    assert tables[0].sites == tables[1].sites == ["mlp.gate", "attn.v"]
    for site in tables[0].sites:
        assert torch.allclose(tables[0].scores[site], tables[1].scores[site], rtol=1e-5, atol=1e-7)


# -- culture-neurons-lm-eval -------------------------------------------------------------------------

LM_EVAL_CASES = [
    ("nuerons=x.json", r"unknown model_args key 'nuerons' for --model culture-neurons; did you mean neurons\?"),
    ("tp_plan=auto", r"model_args tp_plan: not supported by --model culture-neurons"),
    ("autogptq=true", r"model_args autogptq: not supported"),
    ("neurons={kit}/set-shape.json", r"NeuronSet .* comes from a different model: .*3 layers, this llama model has 2"),
    ("neurons={kit}/set-other.json", None),  # same shape, other family: check_fits warns of the hash, runs
    ("neurons={kit}/missing.json", r"missing\.json does not exist"),
    ("neurons={kit}/garbage.json", r"garbage\.json:1: malformed JSON"),
    ("neurons={kit}/set-model.json,op=zero", r"model_args op='zero': op takes suppress \| enhance \| mean"),
    ("neurons={kit}/set-model.json,op=enhance,factor=abc", r"model_args factor='abc': factor takes a finite number"),
    ("neurons={kit}/set-model.json,op=enhance,factor=nan", r"model_args factor=nan"),
    ("neurons={kit}/set-model.json,op=enhance,factor=inf", r"model_args factor=inf"),
    ("neurons={kit}/set-model.json,op=mean", r"channel means file .*set-model\.means\.safetensors does not exist"),
    ("neurons={kit}/set-model.json,op=mean,means={kit}/garbage.safetensors", r"garbage\.safetensors is not a readable"),
    ("batch_size=0", r"model_args batch_size=0: batch_size takes a whole number >= 1, auto or auto:N"),
    ("dtype=int8", r"model_args dtype='int8'"),
    ("max_length=-3", r"model_args max_length=-3"),
]

# One Python process runs lm-eval's command line once per case (an import of lm-eval per case would
# cost seconds each); each case prints its exit code and stderr as one JSON line. The cases use only
# the local task, so lm-eval's own thousands of task files are not indexed (most of a run's time);
# tests/test_integrations_docs.py runs the command without that shortcut.
LM_EVAL_DRIVER = r"""
import contextlib, io, json, sys
import lm_eval.tasks
from culture_neurons.integrations.lm_eval_cli import main
init = lm_eval.tasks.TaskManager.__init__
lm_eval.tasks.TaskManager.__init__ = lambda self, *a, **kw: init(self, *a, **{**kw, "include_defaults": False})
base, cases = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for args in cases:
    sys.argv = ["culture-neurons-lm-eval", *base[:3], base[3] + "," + args, *base[4:]]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
    print(json.dumps({"code": code, "stderr": err.getvalue()}), flush=True)
"""


@pytest.mark.integration
def test_lm_eval_command_refuses_bad_model_args_in_one_line(kit3, tmp_path):
    pytest.importorskip("lm_eval")
    from culture_neurons.data.lm_eval_export import export_lm_eval

    task = export_lm_eval("demo-culture", tmp_path / "tasks", split="heldout", max_per_group=1).task
    out = tmp_path / "lm-out"
    base = ["--model", "culture-neurons", "--model_args", f"pretrained={kit3 / 'model'}"]
    base += ["--include_path", str(tmp_path / "tasks"), "--tasks", task, "--limit", "2", "--output_path", str(out)]
    cases = [args.format(kit=kit3) for args, _ in LM_EVAL_CASES]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("LMEVAL_LOG_LEVEL", None)
    before = contents(kit3)
    proc = subprocess.run(
        [sys.executable, "-c", LM_EVAL_DRIVER, json.dumps(base), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"code"')]
    assert len(results) == len(cases), proc.stderr[-3000:]
    import re

    for (args, pattern), result in zip(LM_EVAL_CASES, results):
        if pattern is None:
            assert result["code"] in (0, None), (args, result["stderr"][-2000:])
            continue
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert result["code"] == 2, (args, result)
        assert "Traceback" not in result["stderr"], (args, result["stderr"][-2000:])
        assert lines[-1].startswith("error: ") and re.search(pattern, lines[-1]), (args, lines[-1])
    assert contents(kit3) == before
    written = sorted(p.name for p in out.rglob("*.json")) if out.exists() else []
    assert len(written) == 1  # only the one case that ran wrote its results; no failed case wrote any
