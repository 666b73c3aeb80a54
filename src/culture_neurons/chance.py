"""Chance levels and the warning printed when a model scores at or below them.

A model that does not answer a multiple-choice question by its letter still gets a mean target
probability and an accuracy, and both look like numbers worth reading. They are not: at chance, the
neuron scores measure noise. Every command that reports such a number compares it with chance here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# The usual cause for a small model, and what to do about it (shared so every command says the same).
LETTER_FIX = (
    "this model does not answer by letter: "
    "use --target choice / --scorer loglik with cloze templates (--templates cloze)"
)
# Already scoring by option likelihood: switching method cannot help, so the hint names what can.
LIKELIHOOD_FIX = (
    "the model is near chance on these questions even by option likelihood: "
    "try a larger model, check the templates (data list), or use more examples (--max-per-group/--limit)"
)
# Letter-based methods (score targets and evaluation scorers) and their switch to option likelihood.
_SCORE_LETTER_FIX = "this model does not answer by letter: use --target choice with cloze templates (--templates cloze)"
_EVAL_LETTER_FIX = "this model does not answer by letter: use --scorer loglik with cloze templates (--templates cloze)"


def score_fix(target: str) -> str:
    """The hint for a ``score`` run at chance with ``--target target``: never what is already in use.

    ``label`` reads the answer letter, so the fix is option likelihood (``--target choice``);
    ``choice`` and ``answer`` already score the option text, so the fix is a better model or more data.
    """
    return _SCORE_LETTER_FIX if target == "label" else LIKELIHOOD_FIX


def scorer_fix(scorer: str) -> str:
    """The hint for an evaluation at chance with ``--scorer scorer`` (``generate``/``choice`` read letters)."""
    return LIKELIHOOD_FIX if scorer == "loglik" else _EVAL_LETTER_FIX


def chance_level(examples: Iterable[Any]) -> float:
    """Mean of ``1 / number of options`` over the examples that have options or labels.

    Letter labels count when present (``labels``), otherwise the option texts (``options``).
    Examples without either (open questions, scale questions) have no chance level and are left
    out; when none has one, the result is NaN and :func:`chance_warning` stays silent.
    """
    total, n = 0.0, 0
    for ex in examples:
        choices = getattr(ex, "labels", None) or getattr(ex, "options", None)
        if choices:
            total += 1.0 / len(choices)
            n += 1
    return total / n if n else float("nan")


def noise_threshold(chance: float, n: int) -> float:
    """``chance + 2 * sqrt(chance * (1 - chance) / n)``: the binomial two-sigma upper edge of chance."""
    return chance + 2.0 * math.sqrt(chance * (1.0 - chance) / max(n, 1))


def chance_warning(what: str, value: float, chance: float, n: int, fix: str = LETTER_FIX) -> str | None:
    """A one-line warning when ``value`` is below chance or within noise of it, else None.

    ``what`` names the number (e.g. ``"mean target probability"``), ``n`` is how many questions it
    rests on and ``fix`` says what to do. Nothing is returned when the chance level or the value is
    unknown (NaN) or ``n`` is 0, because then there is nothing to compare.
    """
    if n <= 0 or not math.isfinite(chance) or not math.isfinite(value) or not 0.0 < chance < 1.0:
        return None
    edge = noise_threshold(chance, n)
    if value < chance:
        where = "below the chance level"
    elif value < edge:
        where = "within noise of the chance level"
    else:
        return None
    return f"warning: {what} {value:.3f} is {where} {chance:.3f} (n={n}, 2-sigma edge {edge:.3f}); {fix}"
