"""An lm-evaluation-harness model whose neurons are suppressed, enhanced or mean-ablated.

``CultureNeuronsLM`` is lm-eval's ``HFLM`` with one difference: every forward pass and every
generation runs inside :func:`culture_neurons.intervention.intervene`, so any lm-eval task (MMLU,
HellaSwag, ARC, GSM8K, or our own exported benchmarks) measures the intervened model. lm-eval's
built-in ``steered`` model adds vectors to activations; it cannot zero or scale single channels,
hence this model.

From the command line (the package registers the name ``culture-neurons`` under lm-eval's
``lm_eval.models`` entry-point group; ``culture-neurons-lm-eval`` registers it for lm-eval releases
that do not read entry points)::

    culture-neurons-lm-eval --model culture-neurons \\
        --model_args pretrained=smollm2-135m-instruct,neurons=general.json,op=suppress \\
        --tasks hellaswag

``neurons`` takes one NeuronSet file or several joined with ``+`` (their union); ``op`` is
``suppress``, ``enhance`` (``factor``, default 2) or ``mean`` (``means``: a channel-means file,
default ``<first set>.means.safetensors``). Without ``neurons`` the model is unchanged, which gives
the baseline under identical loading. Every other argument of lm-eval's ``hf`` model means what it
means there (:mod:`.lm_eval_loading` applies the loading ones by ``hf``'s rules, the rest go to
``HFLM``); :data:`.lm_eval_args.MODEL_ARGS` lists them all, and an unknown key is an error.

From Python: ``CultureNeuronsLM(model, tokenizer, neurons=general_set, op="suppress")``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..intervention import check_fits, intervene, load_means, means_path
from ..models.adapters import get_adapter
from ..models.loading import model_provenance, resolve_source
from ..selection.neuronset import NeuronSet
from .lm_eval_args import EVALUATION, MODEL_ARGS, check_model_args

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'the lm-eval integration needs lm-evaluation-harness: pip install "culture-neurons[lm-eval]"'
    ) from exc

MODEL_NAME = "culture-neurons"

# What HFLM itself reads when handed a loaded model: the evaluation group, and the tokenizer's loading keys.
_TO_HFLM = {a.name for a in MODEL_ARGS if a.group == EVALUATION} | {"revision", "trust_remote_code"}
_LOG = __import__("logging").getLogger(__name__)


def parse_neurons(neurons: Any) -> tuple[NeuronSet | None, list[str]]:
    """``a.json+b.json``, a path, a NeuronSet or a list of either -> (their union, the file names)."""
    if neurons is None or neurons == "":
        return None, []
    if isinstance(neurons, NeuronSet):
        return neurons, []
    items: Sequence[Any]
    if isinstance(neurons, (str, os.PathLike)):
        items = [p for p in str(neurons).split("+") if p.strip()]
    else:
        items = list(neurons)
    sets, names = [], []
    for item in items:
        if isinstance(item, NeuronSet):
            sets.append(item)
        else:
            path = Path(str(item).strip())
            sets.append(NeuronSet.load(path))  # one-line InputError for a missing or malformed file
            names.append(str(path))
    if not sets:
        raise InputError(f"neurons={neurons!r} names no NeuronSet file")
    union = sets[0].union(*sets[1:]) if len(sets) > 1 else sets[0]
    return union, names


def _means(op: str, means: Any, files: list[str]) -> Mapping[str, torch.Tensor] | None:
    if op != "mean":
        return None
    if isinstance(means, Mapping):
        return means
    if means is None:
        if not files:
            raise InputError("op=mean needs means=FILE (channel means, see `culture-neurons evaluate --op mean`)")
        means = means_path(files[0])
    return load_means(means)


def _warn_unused(op: str, factor_given: bool, means_given: bool, has_neurons: bool) -> None:
    """Say so where an intervention argument would be ignored."""
    if not has_neurons:
        if factor_given or means_given or op != "suppress":
            _LOG.warning(
                "model_args op, factor and means are ignored without neurons=SET.json (the model runs unchanged)"
            )
    elif factor_given and op != "enhance":
        _LOG.warning("model_args factor applies to op=enhance only; ignored with op=%s", op)
    elif means_given and op != "mean":
        _LOG.warning("model_args means applies to op=mean only; ignored with op=%s", op)


@register_model(MODEL_NAME)
class CultureNeuronsLM(HFLM):
    """lm-eval's HFLM with a culture-neurons intervention around every model call and generation."""

    def __init__(
        self,
        pretrained: Any = None,
        tokenizer: Any = None,
        neurons: Any = None,
        op: str = "suppress",
        factor: float | str = 2.0,
        means: Any = None,
        site_map: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Load ``pretrained`` (a name, as for lm-eval's ``hf`` model, or a loaded model) and prepare the intervention.

        Every keyword is one of :data:`~.lm_eval_args.MODEL_ARGS` (lm-eval's ``hf`` arguments and the
        intervention's); an unknown one, or a value of the wrong type, raises :class:`InputError`
        before anything is loaded. A NeuronSet that does not fit the model fails before evaluation.
        """
        if pretrained is None:
            raise InputError("model_args pretrained is required (a hub id, local folder, .gguf file or alias)")
        checked = check_model_args(
            {"tokenizer": tokenizer, "neurons": neurons, "op": op, "factor": factor, "means": means}
            | {"site_map": site_map, **kwargs}
        )
        op, factor = checked["op"], checked["factor"]
        neuron_set, files = parse_neurons(checked["neurons"])
        _warn_unused(op, checked["factor"] != 2.0, means is not None, neuron_set is not None)
        means_values = _means(op, checked["means"], files) if neuron_set is not None else None
        hflm = {k: v for k, v in checked.items() if k in _TO_HFLM and v is not None}
        if isinstance(pretrained, (str, os.PathLike)):
            from .lm_eval_loading import load_for_lm_eval

            model, tokenizer_source = load_for_lm_eval({**checked, "pretrained": str(pretrained)})
            tokenizer = tokenizer_source
        else:
            model = pretrained
            for key in ("device", "dtype", "parallelize", "peft", "delta", "device_map"):
                if checked.get(key) not in (None, False, "auto"):
                    _LOG.warning("model_args %s is ignored for a model that is already loaded", key)
            if tokenizer is None:
                raise InputError(
                    "CultureNeuronsLM(model, tokenizer, ...) needs the tokenizer when given a loaded model"
                )
            if isinstance(tokenizer, (str, os.PathLike)):
                tokenizer = resolve_source(tokenizer)[0]
        adapter = get_adapter(model, checked.get("site_map") or None)
        if neuron_set is not None:
            check_fits(neuron_set, adapter, model)  # a set from another model fails now, not mid-run
        super().__init__(
            pretrained=model, tokenizer=str(tokenizer) if isinstance(tokenizer, Path) else tokenizer, **hflm
        )
        self.neuron_set, self.neuron_files = neuron_set, files
        self.op, self.factor = op, factor
        self.adapter = adapter
        self.means = means_values

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> CultureNeuronsLM:
        """Build from ``--model_args``; a key given there (``device=cpu``) wins over lm-eval's own flag
        for it instead of failing with "got multiple values"."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> CultureNeuronsLM:
        """As :meth:`create_from_arg_string`, for model arguments lm-eval has already parsed."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @contextlib.contextmanager
    def intervention(self) -> Iterator[None]:
        """The intervention as a context manager (nothing when no neurons were given)."""
        if self.neuron_set is None or len(self.neuron_set) == 0:
            yield
            return
        with intervene(self.model, self.neuron_set, self.op, self.factor, adapter=self.adapter, means=self.means):
            yield

    def _model_call(
        self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        with self.intervention():
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    def _model_generate(
        self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any
    ) -> torch.Tensor:
        with self.intervention():
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def intervention_info(self) -> dict[str, Any]:
        """What was done to the model, for lm-eval's results.json (``config.culture_neurons``)."""
        ns = self.neuron_set
        return {
            "op": self.op if ns is not None else None,
            "factor": self.factor if ns is not None and self.op == "enhance" else None,
            "neuron_files": self.neuron_files,
            "n_neurons": 0 if ns is None else len(ns),
            "neuron_set_kind": None if ns is None else ns.kind,
            "neuron_set_sha256": None if ns is None else ns.content_hash(),
            "model": self.provenance(),
        }

    def provenance(self) -> dict[str, Any]:
        """The model's provenance, with the PEFT adapter or delta weights merged into it at loading."""
        recorded = getattr(self.model, "culture_neurons_provenance", None) or {}
        return {**model_provenance(self.model), **{k: recorded[k] for k in ("peft", "delta") if k in recorded}}

    def get_model_info(self) -> dict[str, Any]:
        """HFLM's model-info keys, filled from our provenance (no hub query), plus the intervention."""
        provenance = self.provenance()
        return {
            "model_num_parameters": int(sum(p.numel() for p in self.model.parameters())),
            "model_dtype": str(next(self.model.parameters()).dtype),
            "model_revision": provenance.get("revision"),
            "model_sha": provenance.get("commit") or "",
            "culture_neurons": self.intervention_info(),
        }
