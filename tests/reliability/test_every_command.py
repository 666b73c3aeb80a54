"""The rules of issue 15, enforced over the whole command tree rather than over named cases.

For every command (found by walking ``culture_neurons.cli``) and every file it reads, each kind of
bad file (empty, truncated, binary, not UTF-8, the wrong kind of file, a folder, missing) must give:
a non-zero exit, one error line that names the file, no traceback, and nothing left behind. Every
number option must refuse NaN and infinity before any work. A new command or a new file option
fails :func:`test_every_command_has_a_recipe` until it is added here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from culture_neurons.cli import cli
from tests.reliability.kit import assert_one_line_error, invoke, snapshot

# -- the command tree -------------------------------------------------------------------------------


def leaf_commands() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(cli, [])
    return found


def float_options(cmd: click.Command) -> list[str]:
    return [
        p.opts[0] for p in cmd.params if isinstance(p, click.Option) and isinstance(p.type, click.types.FloatParamType)
    ]


# -- recipes: a valid invocation per command, with its file inputs marked ----------------------------


@dataclass
class Recipe:
    """``argv(kit, work, files)`` builds a valid command line; ``files`` maps a file input to (format, default path)."""

    argv: Callable[[Path, Path, dict[str, Path]], list]
    files: Callable[[Path], dict[str, tuple[str, Path]]] = field(default=lambda k: {})
    # file inputs whose bad-file cases fail today: input -> "OWNER: why" (xfail, strict)
    known: dict[str, str] = field(default_factory=dict)
    slow_baseline: bool = False


def _tables(k: Path) -> dict[str, tuple[str, Path]]:
    return {
        "-d": ("safetensors", k / "ds.safetensors"),
        "-c": ("safetensors", k / "ctl.safetensors"),
        "--countryrc": ("safetensors", k / "crc.safetensors"),
    }


def _sel(kind: str, extra: list) -> Callable:
    return lambda k, w, f: ["select", kind, "-d", f["-d"], "-c", f["-c"], "--countryrc", f["--countryrc"], *extra(w)]


def _eval(cmd: str, extra: list) -> Callable:
    def build(k, w, f):
        argv = [cmd, "-m", k / "llama", "-b", f["-b"], "-o", w / "out" / cmd, "-q", "--n-boot", 10, *extra]
        argv += ["--site-map", f["--site-map"]] if "--site-map" in f else []
        return argv + (["--neurons", f["--neurons"]] if "--neurons" in f else [])

    return build


def _eval_files(k: Path, neurons: bool) -> dict[str, tuple[str, Path]]:
    files = {"-b": ("jsonl", k / "e.jsonl")}
    if neurons:
        files["--neurons"] = ("json", k / "general.json")
    return files


def _first_set(k: Path) -> Path:
    found = sorted((k / "specific").glob("*.json")) if (k / "specific").is_dir() else []
    return found[0] if found else k / "specific" / "set.json"


def _run_config(k: Path) -> Path:
    return k / "run.toml"


RECIPES: dict[str, Recipe] = {
    "score": Recipe(
        lambda k, w, f: [
            "score",
            "-m",
            k / "llama",
            "-e",
            f["-e"],
            "-o",
            w / "out" / "s.safetensors",
            "-q",
            "--site-map",
            f["--site-map"],
        ],
        lambda k: {"-e": ("jsonl", k / "e.jsonl"), "--site-map": ("toml", k / "llama-sites.toml")},
    ),
    "data list": Recipe(lambda k, w, f: ["data", "list"]),
    "data countries": Recipe(lambda k, w, f: ["data", "countries"]),
    "data info": Recipe(lambda k, w, f: ["data", "info", "blend"]),
    "data export": Recipe(
        lambda k, w, f: [
            "data",
            "export",
            "culturalbench-easy",
            "--data-dir",
            f["csv"].parent,
            "--split",
            "all",
            "--out",
            w / "out" / "cb.jsonl",
        ],
        lambda k: {"csv": ("csv", k / "cb" / "CulturalBench-Easy.csv")},
    ),
    "select general": Recipe(_sel("general", lambda w: ["-o", w / "out" / "g.json"]), _tables),
    "select specific": Recipe(
        _sel("specific", lambda w: ["--t", "0.1", "--z", "0", "-o", w / "out" / "specific"]), _tables
    ),
    "select random": Recipe(
        lambda k, w, f: ["select", "random", "--like", f["--like"], "--seeds", 1, "-o", w / "out" / "random"],
        lambda k: {"--like": ("json", k / "general.json")},
    ),
    "select import": Recipe(
        lambda k, w, f: [
            "select",
            "import",
            f["reference"],
            "--table",
            f["--table"],
            "-o",
            w / "out" / "imported.json",
        ],
        lambda k: {"reference": ("json", k / "reference.json"), "--table": ("safetensors", k / "ds.safetensors")},
    ),
    "select export": Recipe(
        lambda k, w, f: ["select", "export", f["neurons"], "-o", w / "out" / "ref.json"],
        lambda k: {"neurons": ("json", k / "general.json")},
    ),
    "evaluate": Recipe(
        _eval("evaluate", []), lambda k: {**_eval_files(k, True), "--site-map": ("toml", k / "llama-sites.toml")}
    ),
    "ablate": Recipe(
        _eval("ablate", ["--seeds", 1]),
        lambda k: {**_eval_files(k, True), "--site-map": ("toml", k / "llama-sites.toml")},
        slow_baseline=True,
    ),
    "cross-culture": Recipe(
        _eval("cross-culture", []),
        lambda k: {
            "-b": ("jsonl", k / "e.jsonl"),
            "--neurons": ("json", _first_set(k)),
            "--site-map": ("toml", k / "llama-sites.toml"),
        },
        slow_baseline=True,
    ),
    "train": Recipe(
        lambda k, w, f: [
            "train",
            "-m",
            k / "llama",
            "--neurons",
            f["--neurons"],
            "-d",
            f["-d"],
            "-o",
            w / "out" / "ft",
            "--max-steps",
            1,
            "--batch-size",
            2,
            "--micro-batch-size",
            2,
            "--budget",
            0.5,
            "--site-map",
            f["--site-map"],
        ],
        lambda k: {
            "--neurons": ("json", k / "general.json"),
            "-d": ("jsonl", k / "e.jsonl"),
            "--site-map": ("toml", k / "llama-sites.toml"),
        },
        slow_baseline=True,
    ),
    "run": Recipe(
        lambda k, w, f: ["run", f["config"], "--dry-run", "-q"], lambda k: {"config": ("toml", _run_config(k))}
    ),
    "report": Recipe(
        lambda k, w, f: ["report", f["manifest.json"].parent, "--out", w / "out" / "report.html"],
        lambda k: {"manifest.json": ("json", k / "run" / "manifest.json")},
        slow_baseline=True,
    ),
    "inspect": Recipe(
        lambda k, w, f: [
            "inspect",
            "--model",
            k / "llama",
            "--neurons",
            f["--neurons"],
            "--examples",
            f["-e"],
            "--control",
            f["-c"],
            "--nlu",
            f["--nlu"],
            "--out",
            w / "out" / "cards.jsonl",
        ],
        lambda k: {
            "--neurons": ("json", k / "general.json"),
            "-e": ("jsonl", k / "e.jsonl"),
            "-c": ("jsonl", k / "e.jsonl"),
            "--nlu": ("jsonl", k / "e.jsonl"),
        },
    ),
    "demo": Recipe(lambda k, w, f: ["demo", "--help"]),
    "validate": Recipe(lambda k, w, f: ["validate", "--help"]),
    "data export-lm-eval": Recipe(lambda k, w, f: ["data", "export-lm-eval", "--help"]),
}
# Commands whose file inputs are not swept here, and why.
NOT_SWEPT = {
    "demo": "reads only the built-in demo data; its pipeline files are swept through `run`",
    "validate": "validate reads a run directory; its files are swept through `report` and `run`",
    "data export-lm-eval": "reads the same benchmark files as `data export`, which is swept",
}


# File options not swept yet, with the reason; each is listed in RELIABILITY.md as a gap.
UNSWEPT_OPTIONS = {
    name: {
        "--means": "precomputed channel means (safetensors), new in this round",
        "--mean-examples": "examples for --op mean, read by the same reader as -b",
        "--lm-eval-include": "lm-eval task folder, new in this round",
    }
    for name in ("evaluate", "ablate", "cross-culture")
}
UNSWEPT_OPTIONS["inspect"] = {"run_dir": "a run directory, whose files are swept through `report` and `run`"}


def test_every_command_has_a_recipe():
    commands = leaf_commands()
    assert sorted(commands) == sorted(RECIPES), "add a recipe for each new command (and its file inputs)"
    for name in NOT_SWEPT:
        assert name in RECIPES


def test_every_file_option_is_swept(matrix_kit):
    """Each option that takes a file path is one of its recipe's file inputs (or read through a folder option)."""
    through_folder = {"data export": {"--data-dir"}, "report": {"run_dir"}}
    for name, cmd in leaf_commands().items():
        if name in NOT_SWEPT:
            continue
        paths = {
            p.opts[0] if isinstance(p, click.Option) else p.name for p in cmd.params if isinstance(p.type, click.Path)
        }
        outputs = {"--out", "--reference-out", "--summary-json"}
        swept = set(RECIPES[name].files(matrix_kit)) | through_folder.get(name, set())
        aliases = {"--dataset": "-d", "--control": "-c", "--examples": "-e", "--bench": "-b", "--data": "-d"}
        missing = (
            {aliases.get(p, p) for p in paths - outputs}
            - swept
            - {"--data-dir", "--model"}
            - set(UNSWEPT_OPTIONS.get(name, {}))
        )
        assert not missing, f"{name}: file options {sorted(missing)} are not swept"


# -- the kit ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix_kit(rkit, tmp_path_factory):
    """``rkit`` plus a site map, a reference JSON, a CulturalBench CSV, a run config and a finished tiny run."""
    root = tmp_path_factory.mktemp("matrix")
    for p in rkit.iterdir():
        (root / p.name).symlink_to(p)
    sites = {
        "mlp.gate": "mlp.gate_proj",
        "mlp.up": "mlp.up_proj",
        "attn.q": "self_attn.q_proj",
        "attn.k": "self_attn.k_proj",
        "attn.v": "self_attn.v_proj",
    }
    (root / "llama-sites.toml").write_text(
        'layers = "model.layers"\n' + "".join(f'[sites."{n}"]\nmodule = "{m}"\n' for n, m in sites.items())
    )
    assert invoke(["select", "export", rkit / "general.json", "-o", root / "reference.json"]).exit_code == 0
    (root / "cb").mkdir()
    header = (
        "data_idx,question_idx,prompt_question,prompt_option_a,prompt_option_b,prompt_option_c,prompt_option_d,"
        "answer,country\n"
    )
    (root / "cb" / "CulturalBench-Easy.csv").write_text(
        header + '7,q1,"Which food is common?",rice,bread,tacos,sushi,A,Japan\n'
        '8,q2,"Which drink is common?",tea,mate,coffee,beer,B,Spain\n'
    )
    import tomli_w

    from tests.pipeline_helpers import tiny_run_config

    (root / "run.toml").write_text(tomli_w.dumps(tiny_run_config(rkit / "llama", root / "planned")))
    argv = [
        "select",
        "specific",
        "-d",
        rkit / "ds.safetensors",
        "-c",
        rkit / "ctl.safetensors",
        "--countryrc",
        rkit / "crc.safetensors",
        "--t",
        "0.1",
        "--z",
        "0",
        "-o",
        root / "specific",
    ]
    assert invoke(argv).exit_code == 0
    return root


@pytest.fixture(scope="module")
def report_run(matrix_kit, tmp_path_factory):
    from tests.pipeline_helpers import shared_run

    out, _, _ = shared_run(tmp_path_factory)
    target = matrix_kit / "run"
    if not target.exists():
        shutil.copytree(out, target)
    return target


# -- bad files ----------------------------------------------------------------------------------------


def _truncate(src: Path) -> bytes:
    data = src.read_bytes()
    return data[: max(len(data) // 2, 1)]


BAD_KINDS: dict[str, Callable[[Path], bytes | None]] = {
    "empty": lambda src: b"",
    "truncated": _truncate,
    "binary": lambda src: bytes(range(256)) * 4,
    "not UTF-8": lambda src: src.read_bytes()[:20] + b"\xff\xfe\xfa" + src.read_bytes()[20:],
    "wrong kind": lambda src: b"[1, 2, 3]\n" if src.suffix != ".json" else b'{"unrelated": true}\n',
    "folder": lambda src: None,
}
# What a valid file of each format may not lose without an error: "truncated" JSONL can be whole lines.
SKIP = {
    ("jsonl", "truncated"): "a JSONL cut at a line end is a valid, shorter file",
    ("csv", "truncated"): "a CSV cut at a row end is valid",
}


def _cases():
    kit = Path("/nonexistent")  # only the keys and formats are used at collection time
    for name, recipe in sorted(RECIPES.items()):
        if name in NOT_SWEPT:
            continue
        for option, (fmt, _) in recipe.files(kit).items():
            for kind in BAD_KINDS:
                marks = []
                if (fmt, kind) in SKIP:
                    continue
                reason = recipe.known.get(option) or KNOWN.get((name, option, kind)) or KNOWN.get((name, option, "*"))
                if reason:
                    marks.append(pytest.mark.xfail(strict=True, reason=reason))
                if name == "report":
                    marks.append(pytest.mark.slow)
                yield pytest.param(name, option, kind, marks=marks, id=f"{name}|{option}|{kind}")


# Cases known to fail today: (command, option, kind) -> the reason (each becomes a strict xfail).
KNOWN: dict[tuple[str, str, str], str] = {}


def _place_bad(kit: Path, work: Path, option: str, fmt: str, default: Path, kind: str) -> Path:
    data = BAD_KINDS[kind](default)
    if option == "csv":  # a file inside a folder option: copy the folder, spoil the file
        folder = work / "bad-data"
        shutil.copytree(default.parent, folder)
        bad = folder / default.name
        bad.unlink()
    elif option == "manifest.json":
        folder = work / "bad-run"
        shutil.copytree(default.parent, folder)
        bad = folder / default.name
        bad.unlink()
    else:
        bad = work / f"bad-input{default.suffix}"
    if data is None:
        bad.mkdir()
    else:
        bad.write_bytes(data)
    return bad


@pytest.mark.parametrize("name, option, kind", list(_cases()))
def test_bad_file_gives_one_line_naming_it(matrix_kit, request, tmp_path, monkeypatch, name, option, kind):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    if name == "report":
        request.getfixturevalue("report_run")
    recipe = RECIPES[name]
    files = {opt: path for opt, (_, path) in recipe.files(matrix_kit).items()}
    fmt, default = recipe.files(matrix_kit)[option]
    bad = _place_bad(matrix_kit, tmp_path, option, fmt, default, kind)
    files[option] = bad
    before = snapshot(tmp_path)
    last = assert_one_line_error(invoke(recipe.argv(matrix_kit, tmp_path, files)))
    assert bad.name in last, f"the error does not name {bad.name}: {last}"
    left = snapshot(tmp_path) - before
    assert not left, f"left behind: {sorted(left)}"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.slow] if RECIPES[n].slow_baseline else [])
        for n in sorted(RECIPES)
        if n not in NOT_SWEPT
    ],
)
def test_the_recipe_itself_is_valid(matrix_kit, request, tmp_path, monkeypatch, name):
    """Without this, every bad-file case above could pass for the wrong reason."""
    recipe = RECIPES[name]
    if name == "report":
        request.getfixturevalue("report_run")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = {opt: path for opt, (_, path) in recipe.files(matrix_kit).items()}
    result = invoke(recipe.argv(matrix_kit, tmp_path, files))
    assert result.exit_code == 0, result.output


# -- numbers ------------------------------------------------------------------------------------------


def _float_cases():
    for name, cmd in sorted(leaf_commands().items()):
        if name in NOT_SWEPT and name not in ("validate", "data export-lm-eval"):
            continue
        for option in float_options(cmd):
            for value in ("nan", "inf", "-inf"):
                yield pytest.param(name, option, value, id=f"{name}|{option}|{value}")


def test_there_are_number_options_to_check():
    assert len(list(_float_cases())) >= 20


@pytest.mark.parametrize("name, option, value", list(_float_cases()))
def test_non_finite_numbers_are_refused_before_any_work(matrix_kit, tmp_path, name, option, value):
    recipe = RECIPES[name]
    files = {opt: path for opt, (_, path) in recipe.files(matrix_kit).items()}
    argv = recipe.argv(matrix_kit, tmp_path, files)
    if argv[-1] == "--help":
        argv = argv[:-1] + ["--out", tmp_path / "out" / "x"]
    last = assert_one_line_error(invoke([*argv, option, value]))
    assert option in last and "finite" in last, last
    assert not (tmp_path / "out").exists()
