"""Scoring examples: the paper's greedy exact match, option-token argmax, option log-likelihood,
WorldValuesBench alignment and BLEnD short-answer matching.

Which scorer an example gets depends on what it is (:func:`example_kind`):

- ``mcq`` (it has labels or options): the chosen scorer:
  - ``generate`` (the paper's): the greedy next token after the prompt, decoded, compared with the
    gold label by exact match (surrounding whitespace and quote/closing punctuation removed, so a
    token such as ``A"`` reads as ``A``);
  - ``choice``: argmax over the option labels' first tokens at the last prompt position;
  - ``loglik``: lm-evaluation-harness style, the log-likelihood of each option text as a
    continuation; ``correct`` is the argmax of the summed log-likelihood (lm-eval ``acc``),
    ``correct_norm`` of the sum divided by the option text's length in characters (lm-eval's ``acc_norm``,
    which leaves the space before the option out of the length).
    It uses :mod:`culture_neurons.likelihood`, the implementation behind the scoring engine's
    ``choice`` target.
- ``scale`` (``scale_min``/``scale_max`` set, WorldValuesBench): greedy generation of a few tokens,
  the leading integer is the prediction, and the score is the alignment
  ``100 * (1 - |pred - gold| / max(|min - gold|, |max - gold|))``, 0 when no in-range integer was given.
- ``saq`` (a list of accepted ``answers`` in the example's meta, BLEnD short answers): greedy
  generation, correct when an annotator answer occurs in it (:mod:`.saq`).
- ``open`` (none of the above): greedy generation, exact match.

``generate`` and ``choice`` share one forward pass with logits at the last position only, and
report the probability of each option label (softmax over the label tokens' logits).
All rows are batched (the passes live in :mod:`.model_passes`); prompts are left-padded with position ids
that count real tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..data.example import Example
from ..data.registry import metric_of
from ..distributed import gather_in_order, shard, world
from ..errors import InputError
from ..intervention.rowwise import copies_of
from ..likelihood import prompt_texts
from .model_passes import clean_label, first_token_rows, generate_texts, loglik_rows
from .saq import saq_match

__all__ = [
    "KINDS",
    "SCORERS",
    "EvalOptions",
    "alignment",
    "clean_label",
    "evaluate_examples",
    "evaluation_steps",
    "example_kind",
    "parse_scale",
]

SCORERS = ("generate", "choice", "loglik")


def _no_tick(_n: int) -> None:
    """The progress callback when nobody is watching."""


KINDS = ("mcq", "scale", "saq", "open")


@dataclass(frozen=True)
class EvalOptions:
    """How examples are scored.

    Attributes:
        scorer: ``generate`` (the paper's), ``choice`` or ``loglik``; applies to multiple-choice examples.
        batch_size: examples per forward pass (``loglik``: examples, each with all its options).
        chat_template: wrap prompts in the tokenizer's chat template when it has one.
        max_new_tokens: tokens generated for ``generate`` on multiple-choice and open examples (1 = the paper's).
        scale_max_new_tokens: tokens generated for scale (WorldValuesBench) examples.
        saq_max_new_tokens: tokens generated for short-answer (BLEnD SAQ) examples.
        batch_conditions: evaluate the conditions of an experiment together, each row of a batch
            under its own condition (:func:`~culture_neurons.intervention.rowwise.intervene_rows`);
            ``False`` runs one condition after another (the reference path, for debugging). Results
            agree to float rounding, so this is not part of :meth:`identity`.
    """

    scorer: str = "generate"
    batch_size: int = 8
    chat_template: bool = True
    max_new_tokens: int = 1
    scale_max_new_tokens: int = 4
    saq_max_new_tokens: int = 24
    batch_conditions: bool = True

    def validate(self) -> None:
        if self.scorer not in SCORERS:
            raise InputError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORERS)}")
        for name in ("batch_size", "max_new_tokens", "scale_max_new_tokens", "saq_max_new_tokens"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The options that decide the results (what cached rows depend on): all but ``batch_conditions``."""
        out = self.to_dict()
        out.pop("batch_conditions")
        return out


def example_kind(ex: Example) -> str:
    """``scale``, ``saq``, ``mcq`` or ``open`` (see the module docstring)."""
    if ex.scale_min is not None and ex.scale_max is not None:
        return "scale"
    if ex.options or ex.labels:
        return "mcq"
    if isinstance(ex.meta.get("answers"), list) and ex.meta["answers"]:
        return "saq"
    return "open"


_INT = re.compile(r"^\s*[\"'`]?\s*([+-]?\d+)(?![\d])(?!\.\d)")


def parse_scale(text: str) -> int | None:
    """The integer a scale answer starts with (``7``, ``7"}``, `` 10.``), or None (``7.5``, ``seven``)."""
    m = _INT.match(text)
    return int(m.group(1)) if m else None


def alignment(pred: int | None, gold: float, lo: float, hi: float) -> float:
    """WorldValuesBench alignment in [0, 100]; 0 when ``pred`` is None or outside [lo, hi]."""
    if pred is None or not lo <= pred <= hi:
        return 0.0
    span = max(abs(lo - gold), abs(hi - gold))
    if span == 0:
        return 100.0 if pred == gold else 0.0
    return 100.0 * (1.0 - abs(pred - gold) / span)


def evaluation_steps(examples: Sequence[Example], options: EvalOptions | None = None) -> int:
    """How many progress steps :func:`evaluate_examples` counts for ``examples``: one per example and
    pass (multiple-choice examples under ``generate`` with ``max_new_tokens > 1`` take two passes)."""
    opts = options or EvalOptions()
    passes = 2 if opts.scorer == "generate" and opts.max_new_tokens > 1 else 1
    return sum(passes if example_kind(ex) == "mcq" else 1 for ex in examples)


def evaluate_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    options: EvalOptions | None = None,
    progress: Any = False,
    *,
    copies: int = 1,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Score ``examples`` and return one row per example, in input order.

    ``progress``: True for a bar of its own (ETA; one log line every 30 s without a terminal), or a
    bar made by the caller (anything with ``update(n)``, e.g. one bar over all of an experiment's
    conditions, sized with :func:`evaluation_steps`), which is advanced but not closed.

    ``copies``: score each example that many times in the same batches, laid out item-major (row
    ``i * copies + c`` is copy ``c`` of example ``i``), which is what
    :func:`~culture_neurons.intervention.rowwise.intervene_rows` reads to run copy ``c`` under its
    condition ``c``. Each example is tokenised once for all its copies.

    Row keys: ``id, benchmark, country, split, template, kind, scorer, prediction, gold, correct,
    correct_norm (loglik only), score`` (1/0: ``correct_norm`` on a benchmark whose convention is ``acc_norm``
    under ``loglik``, else ``correct``; alignment / 100 for scale examples),
    ``option_probs`` and ``options`` (multiple-choice examples).
    """
    opts = replace(options or EvalOptions(), **overrides)
    opts.validate()
    if not examples:
        raise InputError("no examples to evaluate")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise InputError(f"copies must be a positive integer, got {copies!r}")
    rank, world_size = world()
    mine = list(range(len(examples))) if world_size == 1 else shard(range(len(examples)), rank, world_size)
    local_examples = [examples[i] for i in mine]
    bar, owned = _bar(progress if rank == 0 else False, local_examples, opts, copies)
    try:
        local = (
            _evaluate_local(model, tokenizer, local_examples, opts, bar.update if bar is not None else _no_tick, copies)
            if mine
            else []
        )
    finally:
        if owned:
            bar.close()
    if world_size == 1:
        return local
    # Data parallel: each rank took a round-robin shard; every rank gets all rows back, in input order.
    groups = [local[k * copies : (k + 1) * copies] for k in range(len(mine))]
    gathered = gather_in_order(list(zip(mine, groups)), len(examples), "evaluation rows")
    return [row for group in gathered for row in group]


def _bar(progress: Any, examples: Sequence[Example], opts: EvalOptions, copies: int = 1) -> tuple[Any, bool]:
    """``(bar or None, whether this call owns it)`` for ``evaluate_examples``' ``progress`` argument."""
    if progress is None or progress is False:
        return None, False
    if progress is True:
        from ..progress import progress as make_bar

        return make_bar(total=evaluation_steps(examples, opts) * copies, desc="evaluating", unit="ex"), True
    return progress, False


def _evaluate_local(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    opts: EvalOptions,
    tick: Callable[[int], None],
    copies: int = 1,
) -> list[dict[str, Any]]:
    """Rows for this rank's examples, each ``copies`` times (item-major): each kind scored in one batched
    pass (two for long ``generate``)."""
    prompts, add_special = prompt_texts(tokenizer, examples, opts.chat_template)
    kinds = [example_kind(ex) for ex in examples]
    results: list[dict[str, Any]] = [{} for _ in range(len(examples) * copies)]

    def part(kind: str) -> list[int]:
        return [i for i, k in enumerate(kinds) if k == kind]

    def place(idx: Sequence[int], got: Sequence[dict[str, Any]]) -> None:
        for k, i in enumerate(idx):
            results[i * copies : (i + 1) * copies] = got[k * copies : (k + 1) * copies]

    mcq = part("mcq")
    if mcq:
        got = _mcq_results(
            model, tokenizer, [examples[i] for i in mcq], [prompts[i] for i in mcq], add_special, opts, tick, copies
        )
        metrics = [metric_of(examples[i].dataset) for i in mcq for _ in range(copies)]
        place(mcq, [{**g, "score": _mcq_score(g, m)} for g, m in zip(got, metrics, strict=True)])
    for kind, n_tokens in (
        ("scale", opts.scale_max_new_tokens),
        ("saq", opts.saq_max_new_tokens),
        ("open", opts.max_new_tokens),
    ):
        idx = part(kind)
        if not idx:
            continue
        texts = generate_texts(
            model, tokenizer, copies_of([prompts[i] for i in idx], copies), add_special, n_tokens, opts.batch_size, tick
        )
        place(idx, [_generated_result(kind, examples[idx[j // copies]], text) for j, text in enumerate(texts)])
    return [_output_row(examples[j // copies], kinds[j // copies], res, opts.scorer) for j, res in enumerate(results)]


def _mcq_results(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    prompts: list[str],
    add_special: bool,
    opts: EvalOptions,
    tick: Callable[[int], None],
    copies: int = 1,
) -> list[dict[str, Any]]:
    """Multiple-choice results under ``opts.scorer`` (without ``score``), each example ``copies`` times."""
    if opts.scorer == "loglik":
        return loglik_rows(model, tokenizer, examples, prompts, add_special, opts.batch_size, tick, copies)
    got = first_token_rows(
        model, tokenizer, examples, prompts, add_special, opts.batch_size, opts.scorer == "choice", tick, copies
    )
    if opts.scorer == "generate" and opts.max_new_tokens > 1:
        # The label probabilities still come from the first pass; the prediction is the longer generation.
        texts = generate_texts(
            model, tokenizer, copies_of(prompts, copies), add_special, opts.max_new_tokens, opts.batch_size, tick
        )
        for g, text in zip(got, texts):
            g["prediction"] = clean_label(text)
            g["correct"] = g["prediction"] == g["gold"]
    return got


def _generated_result(kind: str, ex: Example, text: str) -> dict[str, Any]:
    """The result of a ``scale``, ``saq`` or ``open`` example from its generated ``text``."""
    if kind == "scale":
        pred = parse_scale(text)
        try:
            gold = float(ex.answer.strip())
        except ValueError:
            raise InputError(f"example {ex.id!r}: scale answer {ex.answer!r} is not a number") from None
        value = alignment(pred, gold, float(ex.scale_min), float(ex.scale_max))
        return {
            "prediction": text.strip(),
            "parsed": pred,
            "gold": ex.answer.strip(),
            "correct": pred is not None and pred == gold,
            "score": value / 100.0,
        }
    if kind == "saq":
        hit = saq_match(text, [str(a) for a in ex.meta["answers"]])
        return {
            "prediction": text.strip(),
            "gold": ex.answer,
            "matched": hit,
            "correct": hit is not None,
            "score": float(hit is not None),
        }
    pred = clean_label(text)
    return {
        "prediction": pred,
        "gold": clean_label(ex.answer),
        "correct": pred == clean_label(ex.answer),
        "score": float(pred == clean_label(ex.answer)),
    }


def _mcq_score(result: dict[str, Any], metric: str) -> float:
    """A multiple-choice row's ``score``: ``correct_norm`` on a benchmark whose convention is ``acc_norm`` (ARC,
    OpenBookQA, HellaSwag) when the scorer computes it (``loglik``), else ``correct``."""
    norm = result.get("correct_norm")
    return float(norm if metric == "acc_norm" and norm is not None else result["correct"])


def _output_row(ex: Example, kind: str, res: dict[str, Any], scorer: str) -> dict[str, Any]:
    """The public row of one example (see :func:`evaluate_examples`)."""
    return {
        "id": ex.id,
        "benchmark": ex.dataset or "",
        "country": ex.group,
        "split": ex.split or "",
        "template": ex.template_id or "",
        "kind": kind,
        "scorer": scorer if kind == "mcq" else "generate",
        "prediction": res["prediction"],
        "gold": res["gold"],
        "correct": bool(res["correct"]),
        "correct_norm": res.get("correct_norm"),
        "score": float(res["score"]),
        "option_probs": res.get("option_probs"),
        "options": res.get("options"),
    }
