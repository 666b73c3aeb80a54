"""The NeuronSet: a selection of neurons as index tensors, with provenance, stored as JSON.

A neuron is one output channel (``index``) of one site (``mlp.gate``, ``attn.q``, ...) in one
``layer``. A :class:`NeuronSet` keeps its neurons as four parallel tensors (site id, layer, index,
score) and builds the human-readable :class:`Neuron` records only when asked for them.

File format (``culture-neurons/neuron-set`` v1)::

    {"format": "culture-neurons/neuron-set", "format_version": 1,
     "kind": "general" | "specific:<country>" | "random:<seed>" | ...,
     "model": {...model identity of the source tables...}, "num_layers": 32,
     "widths": {"mlp.gate": 14336, ...}, "params": {...selection parameters...},
     "sources": {...hashes of the source tables...}, "package_version": "0.1.0",
     "count": 1234, "neurons": [{"site": "mlp.gate", "layer": 3, "index": 17, "score": 0.12}, ...]}

``score`` is ``null`` where a set has none (random sets). The reference code's format
(``top_neurons`` with ``module_name``/``layer_idx``/``neuron_idx``/``attribute_score``, plus
``model_name`` and ``dataset_ids``) is read by :meth:`NeuronSet.from_reference` and written by
:meth:`NeuronSet.to_reference`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..fileio import sha256_json, write_json_atomic
from .frame import neuron_frame, write_parquet
from .parsing import read_json, shape_of
from .reference import REFERENCE_MODULES, reference_columns, reference_dict, reference_site
from .setfile import FORMAT, FORMAT_VERSION, neuron_set_columns, neuron_set_dict
from .setops import check_same_shape, triple_keys, union_columns
from .sites import SITE_ORDER, ordered_sites, site_rank

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REFERENCE_MODULES",
    "SITE_ORDER",
    "Neuron",
    "NeuronSet",
    "ordered_sites",
    "reference_site",
    "shape_of",
    "site_rank",
]


@dataclass(frozen=True)
class Neuron:
    """One neuron, for humans: site, layer, output channel and the score it was selected by (or None)."""

    site: str
    layer: int
    index: int
    score: float | None = None


class NeuronSet:
    """A set of neurons with provenance.

    Attributes:
        kind: ``general``, ``specific:<country>``, ``random:<seed>``, ``reference`` or a union of these.
        site_names: the site vocabulary that ``site_ids`` index into (canonical order).
        site_ids, layers, indices: int64 tensors ``[n]``.
        scores: float64 ``[n]``; NaN where a neuron has no score.
        num_layers, widths: the shape of the model the set was selected on (None when unknown,
            e.g. for an imported reference set); used to reject sets from another model.
        model: model identity of the source tables (name, config hash, ...), or ``{}``.
        params: the selection parameters.
        sources: provenance of the inputs (table hashes, the set a random draw imitates, ...).
    """

    def __init__(
        self,
        site_names: Sequence[str],
        site_ids: torch.Tensor,
        layers: torch.Tensor,
        indices: torch.Tensor,
        scores: torch.Tensor | None = None,
        *,
        kind: str = "custom",
        num_layers: int | None = None,
        widths: Mapping[str, int] | None = None,
        model: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        sources: Mapping[str, Any] | None = None,
        where: str = "neuron set",
    ) -> None:
        self.site_names = tuple(site_names)
        self.site_ids = torch.as_tensor(site_ids, dtype=torch.int64).reshape(-1)
        self.layers = torch.as_tensor(layers, dtype=torch.int64).reshape(-1)
        self.indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        n = self.site_ids.numel()
        if scores is None:
            scores = torch.full((n,), float("nan"), dtype=torch.float64)
        self.scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
        self.kind = str(kind)
        self.num_layers = None if num_layers is None else int(num_layers)
        self.widths = None if widths is None else {str(k): int(v) for k, v in widths.items()}
        self.model = dict(model or {})
        self.params = dict(params or {})
        self.sources = dict(sources or {})
        self._neurons: tuple[Neuron, ...] | None = None
        self._validate(where)

    # -- construction helpers ---------------------------------------------------------------

    @classmethod
    def from_columns(
        cls,
        sites: Sequence[str],
        layers: Sequence[int] | torch.Tensor,
        indices: Sequence[int] | torch.Tensor,
        scores: Sequence[float | None] | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> NeuronSet:
        """Build a set from parallel columns (site names, layers, indices, optional scores)."""
        names = ordered_sites(sites)
        lookup = {s: i for i, s in enumerate(names)}
        site_ids = torch.tensor([lookup[s] for s in sites], dtype=torch.int64)
        if scores is not None and not isinstance(scores, torch.Tensor):
            scores = torch.tensor([float("nan") if s is None else float(s) for s in scores], dtype=torch.float64)
        try:
            layer_t = torch.as_tensor(layers, dtype=torch.int64)
            index_t = torch.as_tensor(indices, dtype=torch.int64)
        except (OverflowError, RuntimeError, TypeError, ValueError) as exc:
            where = kwargs.get("where", "neuron set")
            raise InputError(f"{where}: layers and indices must be integers that fit in 64 bits ({exc})") from None
        return cls(names, site_ids, layer_t, index_t, scores, **kwargs)

    @classmethod
    def from_neurons(cls, neurons: Iterable[Neuron], **kwargs: Any) -> NeuronSet:
        """Build a set from :class:`Neuron` records."""
        neurons = list(neurons)
        return cls.from_columns(
            [n.site for n in neurons],
            [n.layer for n in neurons],
            [n.index for n in neurons],
            [n.score for n in neurons],
            **kwargs,
        )

    def _validate(self, where: str) -> None:
        n = self.site_ids.numel()
        if not (self.layers.numel() == self.indices.numel() == self.scores.numel() == n):
            raise InputError(f"{where}: site, layer, index and score columns differ in length")
        if n == 0:
            return
        if int(self.site_ids.min()) < 0 or int(self.site_ids.max()) >= len(self.site_names):
            raise InputError(f"{where}: site ids out of range for sites {list(self.site_names)}")
        bad = (self.layers < 0) | (self.indices < 0)
        if self.num_layers is not None:
            bad |= self.layers >= self.num_layers
        if self.widths is not None:
            used = set(self.site_ids.unique().tolist())
            unknown = [s for i, s in enumerate(self.site_names) if s not in self.widths and i in used]
            if unknown:
                raise InputError(
                    f"{where}: NeuronSet with site(s) {unknown} that its model does not have "
                    f"(sites: {', '.join(self.widths)})"
                )
            width = torch.tensor([self.widths.get(s, 0) for s in self.site_names], dtype=torch.int64)[self.site_ids]
            bad |= self.indices >= width
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            shape = f"{self.num_layers} layers" if self.num_layers is not None else "layers"
            width = f"width {self.widths.get(self.site_names[int(self.site_ids[i])])}" if self.widths else ""
            raise InputError(
                f"{where}: NeuronSet with out-of-range indices, e.g. {self.site_names[int(self.site_ids[i])]} "
                f"layer {int(self.layers[i])} index {int(self.indices[i])} "
                f"(model: {shape}{', ' + width if width else ''}); "
                "was it selected on another model?"
            )
        key = self._keys()
        if key.unique().numel() != n:
            _, inverse, counts = key.unique(return_inverse=True, return_counts=True)
            dup = int((counts[inverse] > 1).nonzero()[0, 0])
            raise InputError(
                f"{where}: neuron {self.site_names[int(self.site_ids[dup])]} layer {int(self.layers[dup])} "
                f"index {int(self.indices[dup])} is listed more than once"
            )

    def _keys(self) -> torch.Tensor:
        """One int64 key per neuron, ordered like (site rank, layer, index)."""
        return triple_keys(self.site_ids, self.layers, self.indices, len(self.site_names))

    # -- views --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.site_ids.numel()

    def __repr__(self) -> str:
        per = ", ".join(f"{s}={n}" for s, n in self.site_counts().items())
        return f"NeuronSet(kind={self.kind!r}, n={len(self)}{', ' + per if per else ''})"

    @property
    def neurons(self) -> tuple[Neuron, ...]:
        """The neurons as frozen records (built once, on first access)."""
        if self._neurons is None:
            scores = [None if math.isnan(s) else s for s in self.scores.tolist()]
            names = [self.site_names[i] for i in self.site_ids.tolist()]
            self._neurons = tuple(map(Neuron, names, self.layers.tolist(), self.indices.tolist(), scores))
        return self._neurons

    @property
    def sites(self) -> list[str]:
        """Sites that hold at least one neuron, in canonical order."""
        used = set(self.site_ids.unique().tolist())
        return [s for i, s in enumerate(self.site_names) if i in used]

    def site_counts(self) -> dict[str, int]:
        """Number of neurons per site."""
        counts = torch.bincount(self.site_ids, minlength=len(self.site_names)).tolist()
        return {s: c for s, c in zip(self.site_names, counts) if c}

    def layer_counts(self, site: str) -> torch.Tensor:
        """Number of neurons of ``site`` per layer (int64 ``[num_layers]``, or up to the highest layer used)."""
        mask = (
            self.site_ids == self.site_names.index(site)
            if site in self.site_names
            else torch.zeros_like(self.site_ids, dtype=torch.bool)
        )
        size = self.num_layers or (int(self.layers.max()) + 1 if len(self) else 0)
        return torch.bincount(self.layers[mask], minlength=size)

    def by_site(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{site: (layers, indices)}`` int64 tensors, for interventions."""
        out = {}
        for i, site in enumerate(self.site_names):
            mask = self.site_ids == i
            if bool(mask.any()):
                out[site] = (self.layers[mask], self.indices[mask])
        return out

    def content_hash(self) -> str:
        """SHA-256 of the kind and the neurons (order-independent)."""
        order = torch.argsort(self._keys()) if len(self) else torch.zeros(0, dtype=torch.int64)
        names = [self.site_names[i] for i in self.site_ids[order].tolist()]
        return sha256_json(
            {
                "kind": self.kind,
                "sites": names,
                "layers": self.layers[order].tolist(),
                "indices": self.indices[order].tolist(),
            }
        )

    def sorted(self) -> NeuronSet:
        """A copy ordered by (site, layer, index)."""
        return self._take(torch.argsort(self._keys()), kind=self.kind)

    def _take(self, order: torch.Tensor, **overrides: Any) -> NeuronSet:
        kwargs = dict(
            kind=self.kind,
            num_layers=self.num_layers,
            widths=self.widths,
            model=self.model,
            params=self.params,
            sources=self.sources,
        )
        kwargs.update(overrides)
        return NeuronSet(
            self.site_names, self.site_ids[order], self.layers[order], self.indices[order], self.scores[order], **kwargs
        )

    # -- combining ------------------------------------------------------------------------------

    def union(self, *others: NeuronSet) -> NeuronSet:
        """All neurons of this set and ``others`` (each once; the first score seen is kept)."""
        sets = (self, *others)
        for other in others:
            check_same_shape(self, other)
        names, site_ids, layers, indices, scores = union_columns(sets)
        shaped = next((ns for ns in sets if ns.widths is not None), self)
        return NeuronSet(
            names,
            site_ids,
            layers,
            indices,
            scores,
            kind="+".join(ns.kind for ns in sets),
            num_layers=shaped.num_layers,
            widths=shaped.widths,
            model=shaped.model,
            params={"union_of": [ns.kind for ns in sets]},
            sources={"union_of": [ns.content_hash() for ns in sets]},
        )

    def __or__(self, other: NeuronSet) -> NeuronSet:
        if not isinstance(other, NeuronSet):
            return NotImplemented
        return self.union(other)

    # -- files ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module docstring)."""
        return neuron_set_dict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set as JSON, atomically."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str = "neuron set") -> NeuronSet:
        """Build a set from its JSON form; malformed input raises :class:`InputError` naming ``where``."""
        return cls.from_columns(**neuron_set_columns(data, where))

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeuronSet:
        """Read a set written by :meth:`save` (or a reference ``top_neurons`` JSON)."""
        return cls.from_dict(read_json(path), str(path))

    # -- other formats ----------------------------------------------------------------------------

    @classmethod
    def from_reference(cls, path: str | os.PathLike, shape: Any = None, kind: str = "reference") -> NeuronSet:
        """Import a neuron JSON published with the paper's code.

        ``shape`` (a ScoreTable, a ModelAdapter, or ``(num_layers, widths)``) tells the set which
        model it belongs to, so out-of-range neurons are rejected now rather than at intervention time.
        """
        data = read_json(path)
        if not isinstance(data, dict) or "top_neurons" not in data:
            raise InputError(f"{path}: not a reference neuron JSON (no 'top_neurons' key)")
        return cls.from_columns(**reference_columns(data, str(path), shape, kind))

    def to_reference_dict(
        self, model_name: str | None = None, dataset_ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The reference code's JSON form (``top_neurons`` with ``module_name``, ...)."""
        return reference_dict(self, model_name, dataset_ids)

    def to_reference(
        self, path: str | os.PathLike, model_name: str | None = None, dataset_ids: Sequence[str] | None = None
    ) -> Path:
        """Write the reference code's JSON form, atomically."""
        path = Path(path)
        write_json_atomic(path, self.to_reference_dict(model_name, dataset_ids))
        return path

    def to_frame(self, model: Any = None) -> Any:
        """A pandas DataFrame, one row per neuron: site, layer, index, score, and with ``model``
        (a model or its :class:`~culture_neurons.models.adapters.ModelAdapter`) also hf_module,
        channel and tl_hook (see :mod:`culture_neurons.selection.frame`)."""
        return neuron_frame(self, model)

    def to_parquet(self, path: str | os.PathLike, model: Any = None) -> Path:
        """Write :meth:`to_frame` as a Parquet file, atomically (needs pandas and pyarrow)."""
        return write_parquet(self.to_frame(model), path)
