"""Issue 27, part 1: every option value is typed and checked before any work, never a traceback.

(a) Every declared option of every registered benchmark, fed arbitrary text through the path the
CLI uses (and typed values around its bounds through the path a config uses): a value of the
declared type within range, or one ``InputError`` line naming the benchmark and the option.
(b) Every number option of every command of the ``culture-neurons`` CLI (found by walking the
command tree, so a new command is covered without an edit here), fed arbitrary text: click's own
one-line error naming the option when the value is bad, never a traceback. Each command is stopped
by a missing or impossible other argument after the option is parsed, so nothing loads a model.
The other free-form ``KEY=VALUE`` inputs (``--option``, ``--set``, ``--max-memory``) get the same.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from culture_neurons.cli import cli
from culture_neurons.data import get_benchmark, list_benchmarks
from culture_neurons.data.cli import parse_benchmark_options
from culture_neurons.data.options import BenchmarkOption, resolve_options
from culture_neurons.errors import InputError
from culture_neurons.models.load_options import check_max_memory
from culture_neurons.pipeline.config import builtin_config
from tests.reliability.kit import assert_one_line_error, invoke

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ERROR_LINE = re.compile(r"^(error|Error): ")
MISSING = "no-such-folder-for-this-test"

# Text a user might type: anything, number-like text, and the words a parser treats specially.
NUMBERISH = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", " ", "-0", "+1", "1e3", "1_000", "0x10", "١٢", "1.0", "true", "none", "--help", "=", "a=b", "9" * 5000]
    ),
)
TEXT = st.one_of(st.text(max_size=30), NUMBERISH)


@pytest.fixture(scope="module", autouse=True)
def offline():
    # Nothing here should reach the network: a command that got past parsing stays offline.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield


def _declared() -> list[tuple[str, BenchmarkOption]]:
    return [(b.name, o) for b in list_benchmarks() for o in b.options]


def _assert_option_error(exc: InputError, benchmark: str, option: str) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{benchmark}: option {option} must be "), message


def _within(option: BenchmarkOption, value: object) -> None:
    assert type(value) is option.type, (option.name, value)
    if option.choices:
        assert value in option.choices
    if option.min is not None:
        assert value >= option.min
    if option.max is not None:
        assert value <= option.max


def _near_bounds(option: BenchmarkOption) -> st.SearchStrategy:
    """Typed values at and around an option's bounds (and of other types), as a config would give them."""
    if option.choices:
        return st.one_of(st.sampled_from(option.choices), st.integers(), st.booleans(), st.none())
    bounds = [b for b in (option.min, option.max) if b is not None]
    around = [type(b)(b) + d for b in bounds for d in (-1, 0, 1)]
    return st.one_of(st.sampled_from(around or [0]), st.integers(), st.floats(), st.booleans(), st.none())


def test_there_are_declared_options():
    names = {(b, o.name) for b, o in _declared()}
    assert {("blend", "max_variants"), ("blend", "filter_scope"), ("worldvaluesbench", "top_k")} <= names


# -- (a) every declared option of every benchmark ------------------------------------------------------


@pytest.mark.parametrize(("bench", "option"), _declared(), ids=lambda x: getattr(x, "name", x))
@FEW
@given(raw=TEXT)
@example(raw="9" * 5000)  # more digits than int() converts
@example(raw="١٢")  # digits of another script, which int() takes
@example(raw="nan")
@example(raw="")
def test_benchmark_option_text_converts_or_fails_in_one_line(bench, option, raw):
    """The CLI's path: ``--option NAME=RAW`` through :func:`parse_benchmark_options`."""
    try:
        typed = parse_benchmark_options(bench, (f"{option.name}={raw}",))
    except InputError as exc:
        _assert_option_error(exc, bench, option.name)
        return
    _within(option, typed[option.name])
    assert set(typed) == {o.name for b, o in _declared() if b == bench}  # the defaults are filled in


@pytest.mark.parametrize(("bench", "option"), _declared(), ids=lambda x: getattr(x, "name", x))
@FEW
@given(data=st.data())
def test_benchmark_option_typed_values_around_the_bounds(bench, option, data):
    """A config's path: typed values (TOML gives ints, floats, booleans, strings) at and around the bounds."""
    value = data.draw(_near_bounds(option))
    try:
        typed = get_benchmark(bench).resolve_options({option.name: value})
    except InputError as exc:
        _assert_option_error(exc, bench, option.name)
        return
    _within(option, typed[option.name])
    if option.min is not None and isinstance(value, int) and not isinstance(value, bool):
        assert typed[option.name] == value  # an accepted typed value is kept as given


@pytest.mark.parametrize(("bench", "option"), _declared(), ids=lambda x: getattr(x, "name", x))
def test_each_bound_is_where_the_declaration_says(bench, option):
    """Not a property, but what keeps the properties above from passing on a converter that refuses all."""
    declared = get_benchmark(bench)
    assert declared.resolve_options({option.name: str(option.default)})[option.name] == option.default
    if option.min is not None:
        assert declared.resolve_options({option.name: str(int(option.min))})[option.name] == option.min
        with pytest.raises(InputError, match=f"{bench}: option {option.name} must be"):
            declared.resolve_options({option.name: str(int(option.min) - 1)})
    for choice in option.choices:
        assert declared.resolve_options({option.name: f" {choice} "})[option.name] == choice


# Every type a declaration may have, so the float and bool converters are exercised as well.
SYNTHETIC = [
    BenchmarkOption("ratio", float, 0.5, "a fraction", min=0.0, max=1.0),
    BenchmarkOption("scale", float, 1.0, "any finite number"),
    BenchmarkOption("flag", bool, False, "on or off"),
    BenchmarkOption("count", int, 3, "a bounded count", min=-2, max=7),
    BenchmarkOption("label", str, "x", "any text"),
]


@pytest.mark.parametrize("option", SYNTHETIC, ids=lambda o: o.name)
@FEW
@given(raw=st.one_of(TEXT, st.integers(), st.floats(allow_nan=True), st.booleans(), st.none()))
@example(raw=10**400)  # beyond float's range
@example(raw="1e400")
@example(raw=float("nan"))
@example(raw="9" * 5000)
def test_every_option_type_converts_or_fails_in_one_line(option, raw):
    try:
        typed = resolve_options("synthetic", (option,), {option.name: raw})
    except InputError as exc:
        _assert_option_error(exc, "synthetic", option.name)
        return
    _within(option, typed[option.name])


def test_a_bad_declaration_fails_at_import():
    with pytest.raises(ValueError, match="default"):
        BenchmarkOption("n", int, 0, "a count", min=1)
    with pytest.raises(ValueError, match="one non-empty line"):
        BenchmarkOption("n", int, 1, "two\nlines")
    with pytest.raises(ValueError, match="choices"):
        BenchmarkOption("n", int, 1, "a count", choices=("1",))


@FEW
@given(key=st.one_of(st.sampled_from(["max_variants", "filter_scope", "max-variants", "x"]), st.text(max_size=12)))
def test_unknown_keys_are_named_with_the_known_ones(key):
    pair = f"{key}=1"
    try:
        typed = parse_benchmark_options("blend", (pair,))
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message
        assert "must look like KEY=VALUE" in message or "blend: unknown option" in message or "blend: option" in message
        if "unknown option" in message:
            assert "max_variants (an integer >= 1; default 5)" in message
        return
    assert key.strip().replace("-", "_") in typed


# -- (b) every number option of every command ----------------------------------------------------------


def _commands() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        found[" ".join(path)] = cmd
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(cli, [])
    return found


def _flag(param: click.Parameter) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])


def _number_options() -> list[tuple[str, str]]:
    return [
        (name, _flag(p))
        for name, cmd in sorted(_commands().items())
        for p in cmd.params
        if isinstance(p, click.Option) and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))
    ]


def _param(command: str, flag: str) -> tuple[click.Command, click.Parameter]:
    cmd = _commands()[command]
    return cmd, next(p for p in cmd.params if flag in p.opts)


def _stopper(cmd: click.Command, param: click.Parameter) -> list[str] | None:
    """Arguments after the option under test that make the command fail once that option is parsed.

    click converts the options in the order they were typed, then the rest in declaration order, so a
    required argument left out, or a path that must exist and does not, fails after ours, before the
    command's body runs.
    """
    others = [p for p in cmd.params if p is not param]
    if any(p.required for p in others):
        return []
    for p in others:
        if isinstance(p, click.Option) and isinstance(p.type, click.Path) and p.type.exists:
            return [f"{_flag(p)}={MISSING}"]
    for p in others:
        if isinstance(p, click.Argument) and isinstance(p.type, click.Path) and p.type.exists:
            return [MISSING]
    for p in others:
        if isinstance(p, click.Option) and isinstance(p.type, click.Choice) and not p.multiple:
            return [f"{_flag(p)}=not-one-of-the-choices"]
    return None


def test_every_number_option_can_be_reached_without_work():
    options = _number_options()
    assert len(options) >= 40, options  # the walk found the commands (score, select, evaluate, train, ...)
    for command, flag in options:
        cmd, param = _param(command, flag)
        assert _stopper(cmd, param) is not None, f"{command} {flag}: add a way to stop the command after parsing"


def _near_bound(param: click.Parameter, step: int) -> str | None:
    """The option's range bound plus ``step`` (-1, 0 or 1), as text; ``None`` for an unbounded option."""
    ends = [e for e in (getattr(param.type, "min", None), getattr(param.type, "max", None)) if e is not None]
    return str(ends[abs(step) % len(ends)] + step) if ends else None


@pytest.mark.parametrize(("command", "flag"), _number_options(), ids=lambda x: x or "cli")
@FEW
@given(text=TEXT, step=st.one_of(st.none(), st.integers(-1, 1)))
@example(text="9" * 5000, step=None)
@example(text="nan", step=None)
@example(text="", step=None)
@example(text="", step=-1)
def test_number_option_text_fails_in_one_line_or_is_taken(command, flag, text, step):
    cmd, param = _param(command, flag)
    raw = (_near_bound(param, step) if step is not None else None) or text
    try:
        param.type.convert(raw, param, None)
        bad = False
    except click.BadParameter:
        bad = True
    argv = [*command.split(), f"{flag}={raw}", *_stopper(cmd, param)]
    result = invoke(argv)
    assert result.exit_code in (0, 1, 2), (argv, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1, result.output
    named = f"Invalid value for '{flag}'" in errors[0] or any(f"'{o}'" in errors[0] for o in param.opts)
    assert named == bad, (raw, errors[0])


# -- the other KEY=VALUE inputs -------------------------------------------------------------------------


@FEW
@given(pair=st.one_of(st.text(max_size=30), st.tuples(st.sampled_from(["max_variants", "language", "top_k"]), TEXT)))
def test_option_pairs_on_the_command_line_fail_in_one_line(pair, tmp_path_factory):
    """``data export blend --option PAIR`` with a data folder that does not exist: the option fails first,
    or, when it is valid, the folder does (so nothing is read)."""
    text = "=".join(pair) if isinstance(pair, tuple) else pair
    out = tmp_path_factory.mktemp("opt") / "x.jsonl"
    argv = ["data", "export", "blend", "--data-dir", MISSING, "--option", text, "--out", out]
    try:
        parse_benchmark_options("blend", (text,))
        bad = False
    except InputError:
        bad = True
    last = assert_one_line_error(invoke(argv), code=2)
    assert ("does not exist" not in last) == bad, (text, last)
    assert not out.exists()


@FEW
@given(text=st.one_of(st.text(max_size=40), st.sampled_from(["0=70GiB,cpu=200GiB", "0=1GB,0=2GB", "cpu", "disk=1"])))
def test_max_memory_fails_in_one_line_or_is_taken(text):
    try:
        check_max_memory(text)
        bad = False
    except InputError as exc:
        assert "\n" not in str(exc) and ("DEVICE=SIZE" in str(exc) or "twice" in str(exc)), str(exc)
        bad = True
    # `score` requires --model, --examples and --out: left out, they fail after --max-memory is parsed.
    last = assert_one_line_error(invoke(["score", f"--max-memory={text}"]), code=2)
    assert ("'--max-memory'" in last) == bad, (text, last)


@FEW
@given(
    key=st.one_of(st.sampled_from(["data.options.blend.max_variants", "evaluate.n_boot", "out"]), st.text(max_size=20)),
    value=TEXT,
)
@example(key="evaluate.n_boot", value="9" * 5000)  # more digits than tomllib converts
@example(key="out", value="x")
def test_set_pairs_fail_in_one_line_or_are_taken(key, value):
    """``run demo --print-config --set KEY=VALUE`` checks the whole config and writes nothing."""
    result = invoke(["run", "demo", "--print-config", "--set", f"{key}={value}"])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code:
        assert_one_line_error(result)


# -- plain cases -----------------------------------------------------------------------------------------


def _config_with(tmp_path: Path, options: dict) -> Path:
    data = tomllib.loads(builtin_config("demo").read_text(encoding="utf-8"))
    data["data"]["options"] = options
    data["run"]["out"] = str(tmp_path / "run")
    path = tmp_path / "run.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"blend": {"max_variant": 3}},
            r"config key 'data.options.blend.max_variant': blend: unknown option 'max_variant'; its options: "
            r"max_variants \(an integer >= 1; default 5\)",
        ),
        (
            {"blend": {"max_variants": "abc"}},
            r"config key 'data.options.blend.max_variants': blend: option max_variants must be an integer >= 1, "
            r"got 'abc'$",
        ),
        (
            {"blend": {"max_variants": 2.5}},
            r"'data.options.blend.max_variants': blend: option max_variants must be an integer >= 1, got 2.5$",
        ),
        (
            {"worldvaluesbench": {"top_k": -1}},
            r"'data.options.worldvaluesbench.top_k': worldvaluesbench: option top_k must be an integer >= 0, got -1$",
        ),
        (
            {"blend-saq": {"language": "fr"}},
            r"blend-saq: option language must be one of en, local, got 'fr'$",
        ),
        ({"demo-culture": {"x": 1}}, r"demo-culture: unknown option 'x'; it takes no options$"),
        ({"BLEND": {"max_variants": 2}}, r"'data.options.BLEND': write the benchmark's name as blend$"),
    ],
)
@pytest.mark.parametrize("mode", ["--print-config", "--dry-run"])
def test_config_options_fail_the_check_before_any_work(tmp_path, options, message, mode):
    config = _config_with(tmp_path, options)
    last = assert_one_line_error(invoke(["run", config, mode, "-q"]), code=2)
    assert re.search(message, last), last
    assert not (tmp_path / "run").exists()


def test_config_options_that_fit_pass_the_check(tmp_path):
    config = _config_with(tmp_path, {"blend": {"max_variants": 2, "filter_scope": "country"}, "blend-saq": {}})
    result = invoke(["run", config, "--print-config"])
    assert result.exit_code == 0, result.output
    assert "max_variants = 2" in result.output


def test_data_info_shows_every_option_with_its_default():
    result = invoke(["data", "info", "blend"])
    assert result.exit_code == 0, result.output
    assert "max_variants=5 (an integer >= 1)" in result.output
    assert "filter_scope=all (one of all, country)" in result.output
    assert_one_line_error(invoke(["data", "info", "no-such-benchmark"]), "unknown benchmark")


def test_data_list_shows_the_options_and_their_defaults():
    result = invoke(["data", "list"])
    assert result.exit_code == 0, result.output
    for _, option in _declared():
        default = str(option.default).lower() if option.type is bool else option.default
        assert f"option: {option.name}={default} ({option.accepts()})" in result.output


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("max_variants=abc", r"^error: blend: option max_variants must be an integer >= 1, got 'abc'$"),
        ("max_variants=0", r"^error: blend: option max_variants must be an integer >= 1, got '0'$"),
        ("filter_scope=some", r"^error: blend: option filter_scope must be one of all, country, got 'some'$"),
        ("nope=1", r"^error: blend: unknown option 'nope'; its options: max_variants"),
        ("max_variants", r"^error: --option 'max_variants' must look like KEY=VALUE"),
        ("seed=3", r"^error: --option seed: seed is not a benchmark option; use --seed$"),
    ],
)
def test_option_errors_on_the_command_line(tmp_path, pair, message):
    out = tmp_path / "x.jsonl"
    argv = ["data", "export", "blend", "--data-dir", MISSING, "--option", pair, "--out", out]
    assert_one_line_error(invoke(argv), message, code=2)
    assert not out.exists()


def test_demo_set_of_its_own_arguments_is_one_line():
    for key, flag in (("out", "--out"), ("data_dir", "--data-dir")):
        last = assert_one_line_error(invoke(["demo", "--dry-run", "--set", f"{key}=x"]), code=2)
        assert f"{key} is not a config key; use {flag}" in last, last
