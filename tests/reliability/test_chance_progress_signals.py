"""The shared utilities: chance levels and warnings, progress output, signals as exceptions."""

from __future__ import annotations

import io
import math
import os
import re
import signal

import pytest

from culture_neurons import signals
from culture_neurons.chance import LETTER_FIX, chance_level, chance_warning, noise_threshold
from culture_neurons.data.example import Example
from culture_neurons.errors import CultureNeuronsError, Interrupted
from culture_neurons.progress import LogProgress, bar_format, progress


def _ex(i: int, labels=None, options=None) -> Example:
    return Example(id=str(i), prompt="q", answer="A", group="g", labels=labels, options=options)


def test_chance_level_is_the_mean_of_one_over_the_options():
    exs = [_ex(0, labels=("A", "B", "C", "D")), _ex(1, options=("x", "y")), _ex(2)]
    assert chance_level(exs) == pytest.approx((0.25 + 0.5) / 2)
    assert math.isnan(chance_level([_ex(3)]))


@pytest.mark.parametrize("value,expect", [(0.16, "below"), (0.26, "within noise"), (0.40, None)])
def test_chance_warning_thresholds(value, expect):
    msg = chance_warning("mean target probability", value, 0.25, 100, LETTER_FIX)
    edge = 0.25 + 2 * math.sqrt(0.25 * 0.75 / 100)
    assert noise_threshold(0.25, 100) == pytest.approx(edge)
    if expect is None:
        assert msg is None
    else:
        assert expect in msg and "--target choice" in msg and "\n" not in msg


def test_chance_warning_at_the_edge_and_unknown_chance():
    edge = noise_threshold(0.25, 50)
    assert chance_warning("acc", edge, 0.25, 50) is None
    assert chance_warning("acc", edge - 1e-9, 0.25, 50) is not None
    assert chance_warning("acc", 0.1, float("nan"), 50) is None
    assert chance_warning("acc", 0.1, 0.25, 0) is None


def test_log_progress_writes_one_line_per_interval():
    now = [0.0]
    out = io.StringIO()
    bar = LogProgress(total=10, desc="scoring", unit="ex", interval=30, stream=out, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 10
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60, 90 s, and the final line
    assert lines[-1].startswith("scoring: 10/10 ex (100%)") and "ETA 00:00" in lines[-1]
    assert "ETA 01:10" in lines[0]  # 3 done in 30 s, 7 left


def test_log_progress_prints_the_final_line_once_when_a_periodic_line_fell_on_it():
    now = [0.0]
    out = io.StringIO()
    bar = LogProgress(total=3, desc="scoring", unit="ex", interval=30, stream=out, clock=lambda: now[0])
    for _ in range(3):
        now[0] += 30  # every update is due a line, the last one at 3/3
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    want = [f"scoring: {i}/3 ex ({pct}%)" for i, pct in ((1, 33), (2, 67), (3, 100))]
    assert [line.split(",")[0] for line in lines] == want


def test_progress_without_a_terminal_falls_back_to_log_lines(capsys):
    items = list(progress(range(3), desc="x", interval=1e9))
    assert items == [0, 1, 2]
    line = capsys.readouterr().err.strip()  # elapsed time and rate are the real clock's: only their form is fixed
    assert re.fullmatch(r"x: 3/3 it \(100%\), \d\d:\d\d elapsed, ETA 00:00(, [\d.]+ (it/s|s/it))?", line), line
    silent = progress(total=5, disable=True)
    silent.update(5)
    silent.close()
    assert capsys.readouterr().err == ""


def test_bar_format_drops_the_bar_when_narrow():
    assert "{bar}" in bar_format(120, True)
    assert "{bar}" not in bar_format(40, True) and "{remaining}" in bar_format(40, True)


def test_interrupted_exit_codes_and_message():
    term = Interrupted(signal.SIGTERM)
    assert isinstance(term, CultureNeuronsError) and term.exit_code == 143 and "SIGTERM" in str(term)
    assert Interrupted(signal.SIGINT).exit_code == 130
    assert "kept x" in str(term.with_kept("kept x"))


def test_signal_raises_at_once_outside_a_deferred_block():
    with signals.handle_signals(), pytest.raises(Interrupted) as info:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    assert info.value.signum == signal.SIGTERM
    assert not signals.installed()


def test_deferred_block_records_then_check_raises():
    done = []
    with signals.handle_signals():
        with pytest.raises(Interrupted) as info:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                done.append(signals.pending())
                signals.check("saved 3 batches")
        assert done == [signal.SIGINT]
        assert info.value.exit_code == 130 and "saved 3 batches" in str(info.value)
        # A second signal while one is pending raises at once.
        with pytest.raises(Interrupted), signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            done.append("not reached")
    assert done == [signal.SIGINT]
    assert signals.pending() is None


def test_deferred_block_raises_on_exit_when_nobody_checked():
    with signals.handle_signals(), pytest.raises(Interrupted):
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
