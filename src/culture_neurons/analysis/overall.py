"""One verdict for the whole run, computed from the checked claims: what the numbers support overall.

The rule (docs/report.md, "The overall verdict") reads the rows that decide whether the
culture-general neurons are cultural: the cultural drop against random sets (``cultural-drop``) and
NLU spared (``nlu-spared``), each after Holm, leaving out rows whose benchmark is at chance. In order:

1. no cultural row above chance: **inconclusive** (nothing to decide on);
2. an NLU row *does not hold* (NLU drops beyond random sets): **generally important, not
   culture-specific**;
3. a cultural row *holds* and every NLU row *holds*: **culture-specific**;
4. a cultural row *holds*, but no NLU row was tested, or one is *not significant*: **inconclusive**
   (culture-specific cannot be told from generally important);
5. every cultural row *does not hold* or is a null with power (*not significant*, its detectable
   effect at most :data:`~.verdicts.INFORMATIVE_MDE` points, and enough random sets for the rank p
   to reach 0.05): **no more than random**;
6. anything else: **inconclusive**, with what the underpowered rows could not rule out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..evaluation.power import ALPHA
from . import stats
from .verdicts import FAILS, HOLDS, INFORMATIVE_MDE, NOT_SIGNIFICANT, RANK_TEST, Claim, reading_tail

SPECIFIC = "culture-specific"
GENERAL = "generally important"
NO_EFFECT = "no more than random"
INCONCLUSIVE = "inconclusive"
KINDS = (SPECIFIC, GENERAL, NO_EFFECT, INCONCLUSIVE)


@dataclass(frozen=True)
class Overall:
    """The run's overall verdict: its ``kind`` (one of :data:`KINDS`), the sentence, and the rows that decide it."""

    kind: str
    text: str
    rows: tuple[Claim, ...] = ()

    @property
    def line(self) -> str:
        """``Overall: <text>``, the first line of the claims box and of the report."""
        return f"Overall: {self.text}"

    def deciding(self) -> list[str]:
        """The deciding rows as ``title [scope]: verdict``."""
        return [f"{c.title} [{c.scope}]: {c.verdict}" for c in self.rows]


def _effects(claims: Sequence[Claim]) -> str:
    return "; ".join(f"{c.scope} Δ {stats.format_ci(c.value, c.ci_low, c.ci_high)} points" for c in claims)


def _informative_null(c: Claim) -> bool:
    """A *not significant* row whose test could have seen an effect that matters."""
    few_sets = c.p_test == RANK_TEST and c.m_random is not None and 1 / (c.m_random + 1) >= ALPHA
    return (
        c.verdict == NOT_SIGNIFICANT
        and (c.ci_verdict or c.verdict) != HOLDS
        and not few_sets
        and c.mde is not None
        and c.mde <= INFORMATIVE_MDE
    )


def overall_verdict(claims: Sequence[Claim]) -> Overall:
    """The overall verdict of a checked claims table (:func:`~.claims.evaluate_claims`), by the rule above."""
    culture = [c for c in claims if c.key == "cultural-drop" and not c.at_chance]
    nlu = [c for c in claims if c.key == "nlu-spared" and not c.at_chance]
    if not culture:
        return Overall(
            INCONCLUSIVE,
            "inconclusive: no cultural benchmark above chance was ablated against random sets, so nothing decides "
            "whether these neurons are cultural",
        )
    held = [c for c in culture if c.verdict == HOLDS]
    hurt = [c for c in nlu if c.verdict == FAILS]
    if hurt:
        tail = f"as well as culture ({_effects(held)})" if held else "while no cultural drop beyond random is shown"
        return Overall(
            GENERAL,
            "these neurons are generally important, not culture-specific: suppressing them lowers NLU beyond random "
            f"sets of their size ({_effects(hurt)}) {tail}",
            tuple(hurt + (held or culture)),
        )
    if held and nlu and all(c.verdict == HOLDS for c in nlu):
        return Overall(
            SPECIFIC,
            "culture-specific: suppressing these neurons lowers cultural accuracy beyond random sets "
            f"({_effects(held)}) while NLU is spared (the cultural drop exceeds the NLU drop)",
            tuple(held + nlu),
        )
    if held:
        open_rows = [c for c in nlu if c.verdict != HOLDS]
        why = (
            "no NLU benchmark above chance was tested"
            if not nlu
            else "NLU is neither shown hurt nor spared ("
            + "; ".join(f"{c.scope}: {reading_tail(c)}" for c in open_rows)
            + ")"
        )
        return Overall(
            INCONCLUSIVE,
            f"inconclusive: the cultural drop beyond random sets holds ({_effects(held)}), but {why}, so "
            "culture-specific cannot be told from generally important",
            tuple(held + open_rows),
        )
    if all(c.verdict == FAILS or _informative_null(c) for c in culture):
        bounds = "; ".join(
            f"{c.scope}: " + (reading_tail(c) if c.verdict == NOT_SIGNIFICANT else "random sets drop more")
            for c in culture
        )
        return Overall(
            NO_EFFECT,
            "these neurons are no more cultural than random ones: suppressing them lowers cultural accuracy no more "
            f"than random sets of their size ({bounds})",
            tuple(culture),
        )
    weak = [c for c in culture if c.verdict != FAILS and not _informative_null(c)]
    return Overall(
        INCONCLUSIVE,
        "inconclusive: " + "; ".join(f"{c.scope}: {reading_tail(c)}" for c in weak),
        tuple(weak),
    )
