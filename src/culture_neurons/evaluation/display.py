"""Terminal tables of ``evaluate``, ``ablate`` and ``cross-culture``: plain column names, one line per fact.

Numbers are in percent (accuracy) or points (changes), each with its 95% bootstrap CI; p-values use
the one format of the report (:func:`~.metrics.format_p`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .metrics import format_p


def fmt_ci(m: Mapping[str, Any] | None, signed: bool = False) -> str:
    """``41.7 [36.9, 46.6]`` (``+`` signs with ``signed``), or ``n/a``."""
    if not m or m.get("value") is None:
        return "n/a"
    f = "{:+.1f}" if signed else "{:.1f}"
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return f.format(m["value"])
    return f"{f.format(m['value'])} [{f.format(m['ci_low'])}, {f.format(m['ci_high'])}]"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Left-aligned text columns, two spaces apart, under a header line."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def evaluation_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per benchmark: ``demo: accuracy 41.7 [36.9, 46.6] (n=48)``, and acc_norm for the loglik scorer."""
    lines = []
    for bench, entry in summary.items():
        overall = entry["overall"]
        text = f"{bench}: {entry['metric']} {fmt_ci(overall)} (n={overall.get('n', 0)})"
        if "acc_norm" in entry:
            text += f"; acc_norm {fmt_ci(entry['acc_norm'])}"
        lines.append(text)
    return lines


def distinct_parts(entry: Mapping[str, Any]) -> list[str]:
    """The parts of an ablation entry worth printing: ``all``, and each split unless it is all the examples."""
    parts = [p for p in entry if p != "metric" and isinstance(entry[p], dict)]
    n_all = entry.get("all", {}).get("n")
    return [p for p in parts if p == "all" or entry[p].get("n") != n_all]


def ablation_lines(summary: Mapping[str, Any], op: str, kind: str) -> list[str]:
    """The ablation (or enhancement / mean-ablation) table: one row per benchmark and distinct part."""
    two_sided = op == "enhance"
    rows = []
    for bench, entry in summary.items():
        for part in distinct_parts(entry):
            r = entry[part]
            if not r.get("n"):
                continue
            k, beaten = beaten_sets(r, rises=two_sided)
            diff = r["difference"]
            rows.append(
                [
                    bench,
                    part,
                    r["n"],
                    fmt_ci(r["original"]),
                    fmt_ci(r["target"]),
                    "n/a" if r.get("random_mean") is None else f"{r['random_mean']:.1f}",
                    fmt_ci(r["change"], signed=True),
                    fmt_ci(diff, signed=True),
                    format_p(diff["p_two_sided" if two_sided else "p_one_sided"]),
                    f"{beaten}/{k} random sets" if k else "-",
                ]
            )
    header = [
        "benchmark",
        "examples",
        "n",
        "original %",
        f"{op} {kind} %",
        "random mean %",
        "change (points)",
        f"{op} - random (points)",
        "p (two-sided)" if two_sided else "p (one-sided)",
        "rises more than" if two_sided else "drops more than",
    ]
    return table(header, rows)


def beaten_sets(r: Mapping[str, Any], rises: bool = False) -> tuple[int, int]:
    """``(k, beaten)``: how many random sets there are and how many the targeted set beats.

    Beating means a larger drop, or with ``rises`` (enhancement) a larger rise, in accuracy.
    """
    changes = r.get("random_changes") or []
    if not rises:
        return len(changes), round((r.get("fraction_random_smaller_drop") or 0.0) * len(changes))
    target = (r.get("change") or {}).get("value")
    return len(changes), 0 if target is None else sum(1 for c in changes if c < target)


def curve_lines(curve: Sequence[Mapping[str, Any]]) -> list[str]:
    """The enhancement sweep: one row per factor, benchmark and part."""
    rows = [
        [
            f"{r['factor']:g}",
            r["benchmark"],
            r["part"],
            r["n"],
            f"{r['original']:.1f}",
            f"{r['target']:.1f}",
            fmt_ci({"value": r["change"], "ci_low": r["change_ci_low"], "ci_high": r["change_ci_high"]}, signed=True),
            fmt_ci(
                {"value": r["difference"], "ci_low": r["difference_ci_low"], "ci_high": r["difference_ci_high"]},
                signed=True,
            ),
            format_p(r["p_two_sided"]),
        ]
        for r in curve
    ]
    return table(
        [
            "factor",
            "benchmark",
            "examples",
            "n",
            "original %",
            "enhanced %",
            "change (points)",
            "vs random (points)",
            "p (two-sided)",
        ],
        rows,
    )


def cross_culture_lines(summary: Mapping[str, Any]) -> list[str]:
    """The change matrix (rows: whose set was suppressed; columns: whose questions), with n per column."""
    cols = list(summary.get("eval_countries", []))
    rows = []
    for c in summary.get("set_countries", []):
        cells = summary["change"].get(c, {})
        rows.append([c] + [fmt_ci(cells.get(e), signed=True) for e in cols])
    n_row = ["n (questions)"] + [str((summary.get("original", {}).get(e) or {}).get("n", "")) for e in cols]
    return table(["set \\ questions", *cols], [*rows, n_row])


def own_country_rows(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The cross-culture rows that can say whether their own country was hurt most (both numbers known).

    Shared with the report's own-country claim, so that the terminal and the report count the same rows.
    """
    return [
        r
        for r in (summary.get("rows") or {}).values()
        if r.get("diagonal") is not None and r.get("off_diagonal_mean") is not None
    ]


def own_country_line(summary: Mapping[str, Any]) -> str | None:
    """``own country hurt most: 3 of 8 countries (1 in 8 by chance); own-country change -4.1, others' mean -1.2``."""
    rows = own_country_rows(summary)
    countries = len(summary.get("eval_countries") or []) or len(rows)
    if not rows or countries < 2:
        return None
    hits = sum(bool(r.get("diagonal_is_most_negative")) for r in rows)
    text = f"own country hurt most: {hits} of {len(rows)} countries (1 in {countries} by chance)"
    diag, off = summary.get("diagonal_mean"), summary.get("off_diagonal_mean")
    if diag is not None and off is not None:
        text += f"; mean change on own country {diag:+.1f} points, on the others {off:+.1f}"
    return text


def baseline_line(accuracy: float, n: int, chance: float) -> str:
    """``original model: accuracy 31.2% on 128 questions; chance 25.0% (within noise: up to 32.7%)``, in percent."""
    from ..chance import noise_threshold

    edge = 100.0 * noise_threshold(chance / 100.0, n)
    where = "below chance" if accuracy < chance else "within noise of chance" if accuracy < edge else "above chance"
    return (
        f"original model: accuracy {accuracy:.1f}% on {n} questions; "
        f"chance {chance:.1f}% ({where}, 2-sigma edge {edge:.1f}%)"
    )
