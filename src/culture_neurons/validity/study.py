"""The shared state of one validity run: model, data, cell tables, the default set, the evaluator."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ..attribution.engine import ScoringOptions, score_examples
from ..attribution.scoretable import ScoreTable
from ..data.example import Example
from ..errors import InputError
from ..evaluation.scorers import EvalOptions
from ..models.loading import model_identity
from ..selection.neuronset import NeuronSet
from ..selection.randomsets import RandomBaseline
from ..selection.select import select_general
from .claims import compute_once
from .conditions import Evaluator
from .fit import check_inputs_fit
from .folds import cell_name, fold_tables, load_if, score_cells, template_tables, templates_of, total
from .options import SelectionSettings, ValidityData, ValidityOptions

log = logging.getLogger(__name__)


class Study:
    """Lazily computed, cached ingredients shared by the analyses (each is computed at most once)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        data: ValidityData,
        out: str | Path,
        *,
        settings: SelectionSettings | None = None,
        options: ValidityOptions | None = None,
        scoring: ScoringOptions | None = None,
        evaluation: EvalOptions | None = None,
        progress: bool = False,
    ) -> None:
        self.model, self.tokenizer, self.data = model, tokenizer, data
        self.out = Path(out)
        self.settings = settings or SelectionSettings()
        self.options = options or ValidityOptions()
        self.options.validate()
        self.scoring = scoring or ScoringOptions(target="choice")
        self.evaluation = evaluation or EvalOptions(scorer="loglik")
        self.progress = progress
        if not data.identification:
            raise InputError("validity needs identification examples to score")
        if data.control is None and not data.control_tables:
            raise InputError("validity needs control examples or control tables (the paper's control subtraction)")
        check_inputs_fit(data, model)  # a table or set of another model fails before anything is scored
        self.model_id = model_identity(model)
        self.evaluator = Evaluator(
            model,
            tokenizer,
            data.culture,
            data.nlu,
            self.evaluation,
            self.out / "evals",
            progress,
            drop_at_chance=self.options.drop_at_chance,
            bootstrap=(self.options.n_boot, self.options.seed),
        )

    # -- scoring ------------------------------------------------------------------------------

    def score(
        self, examples: Sequence[Example], groups: Sequence[str] | None = None, control: bool = False
    ) -> ScoreTable:
        """Score examples with the run's scoring options."""
        opts = replace(self.scoring, control=control)
        return score_examples(self.model, self.tokenizer, list(examples), opts, groups=groups, progress=self.progress)

    @cached_property
    def cells(self) -> dict[tuple[int, str], ScoreTable]:
        """Identification tables per (fold, template), saved under ``validity/folds/``."""
        return score_cells(
            self.data.identification,
            self.options.folds,
            self.out / "folds",
            self.score,
            seed=self.options.seed,
            model_id=self.model_id,
        )

    @cached_property
    def full_table(self) -> ScoreTable:
        """The full identification table: the sum of every cell."""
        return total(list(self.cells.values()))

    @cached_property
    def folds(self) -> dict[int, ScoreTable]:
        return fold_tables(self.cells)

    @cached_property
    def templates(self) -> dict[str, ScoreTable]:
        return template_tables(self.cells)

    @cached_property
    def control_by_template(self) -> dict[str, ScoreTable]:
        """Control tables per template (scored once each), or ``{}`` when control tables were given."""
        if self.data.control is None:
            return {}
        out = {}
        for template in templates_of(self.data.control):
            exs = [ex for ex in self.data.control if (ex.template_id or "-") == template]
            name = "control-" + cell_name(0, template).removeprefix("fold0-")
            out[template] = self._scored(name, exs, control=True)
        return out

    def controls(self, template: str | None = None) -> list[ScoreTable]:
        """The control table(s) paired with the full table, or with one template's table."""
        if self.data.control_tables:
            return list(self.data.control_tables)
        per = self.control_by_template
        if template is not None and template in per:
            return [per[template]]
        return [total(list(per.values()))]

    def _scored(self, name: str, examples: Sequence[Example], control: bool = False) -> ScoreTable:
        """Score ``examples`` once, cached as ``folds/<name>.safetensors`` (control tables get the
        identification groups, so they pair with every cell)."""
        path = self.out / "folds" / f"{name}.safetensors"
        groups = self.full_table.groups if control else None
        ids = [ex.id for ex in examples]

        def make() -> ScoreTable:
            table = self.score(examples, groups, control=control)
            path.parent.mkdir(parents=True, exist_ok=True)
            table.save(path)
            return table

        return compute_once(path, lambda: load_if(path, ids, model_id=self.model_id), make)

    @cached_property
    def nlu_table(self) -> ScoreTable | None:
        """The NLU identification table for the exclusion filter (scored once), or None."""
        if self.data.nlu_table is not None:
            return self.data.nlu_table
        return (
            self._scored("nlu-identification", self.data.nlu_identification) if self.data.nlu_identification else None
        )

    @cached_property
    def countryrc_table(self) -> ScoreTable | None:
        """The CountryRC table (given, or scored once from CountryRC examples), or None."""
        if self.data.countryrc_table is not None:
            return self.data.countryrc_table
        return self._scored("countryrc", self.data.countryrc) if self.data.countryrc else None

    # -- selection ----------------------------------------------------------------------------

    def general(
        self,
        table: ScoreTable | None = None,
        template: str | None = None,
        t_mlp: float | None = None,
        exclude: Sequence[tuple[ScoreTable, float]] = (),
    ) -> NeuronSet:
        """The general set of a table (default: the full one) at a threshold (default: the settings')."""
        s = self.settings
        t = s.t_mlp if t_mlp is None else t_mlp
        t_attn = s.t_attn * t / s.t_mlp if s.t_mlp else s.t_attn
        kwargs = {"exclude": list(exclude)} if exclude else {}
        return select_general(
            [table or self.full_table],
            self.controls(template),
            self.countryrc_table,
            t_mlp=t,
            t_attn=t_attn,
            r=s.r,
            mlp_sites=s.mlp_sites,
            attn_sites=s.attn_sites,
            **kwargs,
        )

    @cached_property
    def default_set(self) -> NeuronSet:
        """The set the analyses are about: ``data.default_set`` when given, else the settings' selection."""
        ns = self.data.default_set if self.data.default_set is not None else self.general()
        if len(ns) == 0:
            raise InputError("the default general set is empty; raise t_mlp/t_attn or score more examples")
        return ns

    def randoms(self, like: NeuronSet) -> list[NeuronSet]:
        """Random sets of the same size (per pool; per layer too with ``layer_matched``)."""
        seeds = [1000 + i for i in range(self.options.random_seeds)]
        return RandomBaseline(seeds, self.options.layer_matched).draw(like)

    def suppression(
        self, label: str, ns: NeuronSet, op: str = "suppress", means: Any = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Per-item scores with ``ns`` ablated (``op``: ``suppress`` or ``mean``), and with each random set
        of its size ablated the same way."""
        reqs = [(f"{op}-{label}", ns)] + [(f"{op}-{label}-{r.kind.replace(':', '')}", r) for r in self.randoms(ns)]
        scores = self.evaluator.many([(name, s, op, 2.0, means) for name, s in reqs])
        return scores[0], scores[1:]

    @cached_property
    def original(self) -> dict[str, Any]:
        """Per-item scores of the unmodified model."""
        return self.evaluator.scores("original")
