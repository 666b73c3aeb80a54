"""Progress output without a terminal: plain, whole lines (no carriage returns) at a limited rate,
from every bar of the package; tqdm on a terminal; nothing under ``-q``."""

from __future__ import annotations

import ast
import io
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import culture_neurons
from culture_neurons.data import Example
from culture_neurons.progress import LogProgress, progress
from tests.pipeline_helpers import save_tiny_model
from tests.tiny import make_examples

# One progress line: "DESC: N/TOTAL UNIT (P%), MM:SS elapsed, ETA MM:SS[, RATE]", or without a total
# "DESC: N UNIT, MM:SS elapsed[, RATE]"; then what the bar adds (the condition under way).
LINE = re.compile(
    r"(?P<desc>[^:]+): (?P<n>\d+)(/(?P<total>\d+))? (?P<unit>\S+)( \(\d+%\))?, \d\d:\d\d elapsed"
    r"(, ETA (\d\d:\d\d|\?))?(, [\d.]+ (\S+/s|s/\S+))?(, [^\r\n]+)?"  # and the postfix, if any
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stamped(io.StringIO):
    """A stream that notes the fake clock's time of every line written to it."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.times = clock, []

    def write(self, text: str) -> int:
        self.times.extend(self.clock.now for _ in range(text.count("\n")))
        return super().write(text)


@pytest.mark.parametrize("seed", range(5))
def test_at_most_one_line_per_interval_and_one_at_the_end(seed):
    rng = random.Random(seed)
    clock = FakeClock()
    out = Stamped(clock)
    bar = LogProgress(total=500, desc="scoring", unit="ex", interval=30, stream=out, clock=clock)
    for _ in range(500):
        clock.now += rng.expovariate(1 / 0.7)  # uneven steps, some far longer than the interval
        bar.update(1)
    bar.close()
    bar.close()  # a second close adds nothing
    lines = out.getvalue().splitlines()
    periodic = out.times[:-1]  # the final line may follow the last periodic one at once
    gaps = [b - a for a, b in zip([0.0, *periodic], periodic)]
    assert len(periodic) >= 2 and min(gaps) >= 30
    assert len(periodic) <= clock.now // 30
    assert lines[-1].startswith("scoring: 500/500 ex (100%)") and lines.count(lines[-1]) == 1
    assert all(LINE.fullmatch(line) for line in lines), lines


def test_a_short_task_logs_only_its_final_line():
    clock = FakeClock()
    out = io.StringIO()
    with LogProgress(total=40, desc="export", unit="file", interval=30, stream=out, clock=clock) as bar:
        for _ in range(40):
            clock.now += 0.5
            bar.update(1)
    assert out.getvalue() == "export: 40/40 file (100%), 00:20 elapsed, ETA 00:00, 2.0 file/s\n"


def test_lines_carry_the_rate_and_stay_one_line_whatever_the_description():
    clock = FakeClock()
    out = io.StringIO()
    bar = LogProgress(desc="bench\r\nname", unit="batch", interval=10, stream=out, clock=clock)
    clock.now = 40.0
    bar.update(10)  # no total: count, elapsed and rate
    clock.now = 80.0
    bar.update(0)
    bar.close()
    assert out.getvalue().splitlines() == [
        "bench  name: 10 batch, 00:40 elapsed, 4.0 s/batch",
        "bench  name: 10 batch, 01:20 elapsed, 8.0 s/batch",
    ]


def test_a_terminal_keeps_tqdm_and_a_file_gets_log_lines(monkeypatch):
    from tqdm.auto import tqdm

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress(total=3, desc="scoring")
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in sys.stderr.getvalue()  # tqdm redraws its line in place on a terminal
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress(total=3, desc="scoring"), LogProgress)


def test_quiet_prints_nothing(capsys):
    with progress(total=5, desc="scoring", disable=True, interval=1e-9) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_every_bar_of_the_package_comes_from_progress():
    """A bar made with tqdm directly would write carriage returns into a log file."""
    package = Path(culture_neurons.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "progress.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name == "tqdm" or name.startswith("tqdm.") for name in names):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders, offenders


def test_option_logliks_progress_is_plain_lines(llama, tokenizer, capsys, monkeypatch):
    from culture_neurons.likelihood import option_logliks

    monkeypatch.setenv("CULTURE_NEURONS_PROGRESS_INTERVAL", "1e-9")  # a line per batch
    examples = [
        Example(id=f"q{i}", prompt=f"Question {i}?", answer="AB"[i % 2], group="Japan", options=("x", "y"))
        for i in range(4)
    ]
    option_logliks(llama, tokenizer, examples, batch_size=1, progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("option log-likelihoods")]
    assert "\r" not in err and lines and all(LINE.fullmatch(line) for line in lines), err


# -- real commands, their stderr a pipe or a file ---------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    model = save_tiny_model(root / "model")
    examples = root / "e.jsonl"
    examples.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in make_examples(6)))
    return root, model, examples


def _cli(args, stderr) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CULTURE_NEURONS_PROGRESS_INTERVAL": "1e-9"}
    return subprocess.run(
        [sys.executable, "-m", "culture_neurons", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=600,
    )


def _progress_lines(text: str, desc: str) -> list[str]:
    assert "\r" not in text, text
    lines = [line for line in text.splitlines() if line.startswith(desc)]
    assert all(LINE.fullmatch(line) for line in lines), lines
    return lines


def test_score_into_a_pipe_prints_whole_lines_and_quiet_prints_none(files):
    root, model, examples = files
    args = ["score", "-m", model, "-e", examples, "--batch-size", 1]
    loud = _cli([*args, "-o", root / "a.safetensors"], subprocess.PIPE)
    assert loud.returncode == 0, loud.stderr
    lines = _progress_lines(loud.stderr, "scoring")
    assert [int(LINE.fullmatch(x)["n"]) for x in lines] == list(range(7))  # at the start, then one per batch
    assert lines[-1].startswith("scoring (label): 6/6 ex (100%)"), lines
    quiet = _cli([*args, "-o", root / "b.safetensors", "-q"], subprocess.PIPE)
    assert quiet.returncode == 0, quiet.stderr
    assert not _progress_lines(quiet.stderr, "scoring"), quiet.stderr


def test_evaluate_into_a_file_prints_whole_lines(files, tmp_path):
    _, model, examples = files
    log = tmp_path / "log.txt"
    with log.open("w") as fh:
        done = _cli(["evaluate", "-m", model, "-b", examples, "-o", tmp_path / "eval", "--batch-size", 2], fh)
    text = log.read_text()
    assert done.returncode == 0, text
    lines = _progress_lines(text, "evaluating")
    assert lines and lines[-1].startswith("evaluating: 6/6 ex (100%)"), text
