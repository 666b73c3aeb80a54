"""The options of one scoring run (:class:`ScoringOptions`): target, reduction, method and batching."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ScoringError
from .methods import METHOD_NAMES
from .methods.rules import RULES

AGGREGATIONS = ("max", "sum", "last")
TARGETS = ("label", "answer", "choice")
IG_BASELINES = ("zero", "mean")
# Fields only integrated gradients reads; left out of a table's recorded options and identity otherwise.
IG_FIELDS = ("ig_steps", "ig_rule", "ig_baseline")


@dataclass(frozen=True)
class ScoringOptions:
    """Options of one scoring run; defaults follow the paper.

    Attributes:
        target: what p is. ``label`` (the paper's): probability of the gold label's first token.
            ``answer``: exp(mean log-probability of the gold answer's tokens), teacher-forced.
            ``choice``: probability of the gold option under a softmax over the options'
            length-normalised log-likelihoods (the example needs ``options``).
        aggregation: reduction over positions: ``max`` (paper), ``sum`` or ``last``.
        control: clamp example scores at 0 (for the control set).
        reference_compat: fill padding with 0 instead of -inf before the max, reproducing the
            reference implementation's numbers (its padded rows can never score below 0).
        batch_size: examples per forward/backward pass (with ``ig``, each example runs as
            ``ig_steps`` rows, so a pass holds ``batch_size × ig_steps`` rows).
        padding_side: ``left`` (default) or ``right``; the default mode gives the same result either way.
            ``choice`` always pads on the right, so an example's option rows share prompt positions.
        chat_template: wrap prompts in the tokenizer's chat template when it has one.
        sites: restrict scoring to these sites (default: every site of the adapter).
        recompute: trade time for memory: each decoder layer keeps only its input during the forward
            pass and runs again when the backward pass reaches it (activation checkpointing), so one
            layer's activations are alive at a time instead of the whole model's. The scores are the
            same; on the issue's CPU benchmark it took 1.4-1.5x the time for 0.2x the peak memory
            (docs/performance.md). ``choice`` then packs its options or recomputes the prompt per option.
            For ``gxa`` and ``atp-mean`` only.
        method: how a neuron's per-position attribution is computed (docs/methods.md): ``gxa`` (the
            paper's activation × gradient), ``atp-mean`` ((activation − mean activation) × gradient, the
            linear estimate of mean ablation), ``ig`` (integrated gradients of one site at a time, about
            sites × layers × ``ig_steps`` passes per example: for samples and small models) or
            ``ig-joint`` (every scored site interpolated together, ``ig_steps`` passes per example).
            Every method is reduced the same way: p × the aggregation over positions, summed per group.
        ig_steps: integration steps of ``ig`` / ``ig-joint`` (all run in one batched pass per site).
        ig_rule: the quadrature rule over the path, named as captum names them: ``gausslegendre``
            (captum's default), ``riemann_trapezoid``, ``riemann_left``, ``riemann_right``, ``riemann_middle``.
        ig_baseline: where the path starts: ``zero`` (the paper's suppression) or ``mean`` (each
            channel's mean activation: mean ablation).
    """

    target: str = "label"
    aggregation: str = "max"
    control: bool = False
    reference_compat: bool = False
    batch_size: int = 8
    padding_side: str = "left"
    chat_template: bool = True
    sites: tuple[str, ...] | None = None
    recompute: bool = False
    method: str = "gxa"
    ig_steps: int = 32
    ig_rule: str = "gausslegendre"
    ig_baseline: str = "zero"

    def recorded(self) -> dict[str, Any]:
        """The fields a ScoreTable records: all but the ``ig_*`` ones, unless the method reads them."""
        fields = asdict(self)
        if not self.method.startswith("ig"):
            for name in IG_FIELDS:
                del fields[name]
        return fields

    def identity(self) -> dict[str, Any]:
        """The fields that decide the scores: all but ``recompute``, which changes only time and memory
        (so a checkpoint or a finished pipeline step stays valid when it is switched). With the default
        method the method fields are left out too, so identities made before methods existed still match."""
        fields = self.recorded()
        del fields["recompute"]
        if self.method == "gxa":
            del fields["method"]
        return fields

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ScoringError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ScoringError(f"unknown aggregation {self.aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
        if self.batch_size < 1:
            raise ScoringError(f"batch size must be at least 1, got {self.batch_size}")
        if self.padding_side not in ("left", "right"):
            raise ScoringError(f"padding side must be 'left' or 'right', got {self.padding_side!r}")
        if self.reference_compat and self.target != "label":
            raise ScoringError(
                "reference_compat reproduces the reference code's label target only; use it with target='label'"
            )
        self._validate_method()

    def _validate_method(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ScoringError(f"unknown method {self.method!r}; choose one of {', '.join(METHOD_NAMES)}")
        if not self.method.startswith("ig"):
            return
        if self.ig_rule not in RULES:
            raise ScoringError(f"unknown ig_rule {self.ig_rule!r}; choose one of {', '.join(RULES)}")
        least = 2 if self.ig_rule == "riemann_trapezoid" else 1
        if isinstance(self.ig_steps, bool) or not isinstance(self.ig_steps, int) or self.ig_steps < least:
            raise ScoringError(
                f"ig_steps must be an integer of at least {least} for {self.ig_rule}, got {self.ig_steps}"
            )
        if self.ig_baseline not in IG_BASELINES:
            raise ScoringError(f"unknown ig_baseline {self.ig_baseline!r}; choose one of {', '.join(IG_BASELINES)}")
        if self.recompute:
            raise ScoringError(
                f"recompute applies to gxa and atp-mean; {self.method} keeps one interpolated site's graph per pass"
            )
