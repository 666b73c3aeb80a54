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

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import InputError
from ..fileio import sha256_json, write_json_atomic

FORMAT = "culture-neurons/neuron-set"
FORMAT_VERSION = 1

# Canonical site order; ties between equal scores are broken by (site rank, layer, index).
SITE_ORDER = ("mlp.gate", "mlp.up", "mlp.in", "attn.q", "attn.k", "attn.v")

# The reference code names modules by their Hugging Face projection; the last path component decides.
REFERENCE_MODULES = {
    "gate_proj": "mlp.gate",
    "up_proj": "mlp.up",
    "q_proj": "attn.q",
    "k_proj": "attn.k",
    "v_proj": "attn.v",
}
_EXPORT_NAMES = {
    "mlp.gate": "mlp.gate_proj",
    "mlp.up": "mlp.up_proj",
    "attn.q": "self_attn.q_proj",
    "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj",
}


def site_rank(site: str) -> tuple[int, str]:
    """Sort key of a site name: canonical sites first in :data:`SITE_ORDER`, others alphabetically."""
    return (SITE_ORDER.index(site), "") if site in SITE_ORDER else (len(SITE_ORDER), site)


def ordered_sites(sites: Iterable[str]) -> list[str]:
    """Distinct site names in canonical order."""
    return sorted(set(sites), key=site_rank)


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
        return cls(names, site_ids, torch.as_tensor(layers), torch.as_tensor(indices), scores, **kwargs)

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
                    f"{where}: NeuronSet with site(s) {unknown} that its model does not have (sites: {', '.join(self.widths)})"
                )
            width = torch.tensor([self.widths.get(s, 0) for s in self.site_names], dtype=torch.int64)[self.site_ids]
            bad |= self.indices >= width
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            shape = f"{self.num_layers} layers" if self.num_layers is not None else "layers"
            width = f"width {self.widths.get(self.site_names[int(self.site_ids[i])])}" if self.widths else ""
            raise InputError(
                f"{where}: NeuronSet with out-of-range indices, e.g. {self.site_names[int(self.site_ids[i])]} "
                f"layer {int(self.layers[i])} index {int(self.indices[i])} (model: {shape}{', ' + width if width else ''}); "
                "was it selected on another model?"
            )
        key = self._keys()
        if key.unique().numel() != n:
            uniq, inverse, counts = key.unique(return_inverse=True, return_counts=True)
            dup = int((counts[inverse] > 1).nonzero()[0, 0])
            raise InputError(
                f"{where}: neuron {self.site_names[int(self.site_ids[dup])]} layer {int(self.layers[dup])} "
                f"index {int(self.indices[dup])} is listed more than once"
            )

    def _keys(self) -> torch.Tensor:
        """One int64 key per neuron, ordered like (site rank, layer, index)."""
        stride_i = int(self.indices.max()) + 1 if self.indices.numel() else 1
        stride_l = (int(self.layers.max()) + 1 if self.layers.numel() else 1) * stride_i
        return self.site_ids * stride_l + self.layers * stride_i + self.indices

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
            _check_same_shape(self, other)
        names = ordered_sites(s for ns in sets for s in ns.site_names)
        remap = [torch.tensor([names.index(s) for s in ns.site_names], dtype=torch.int64) for ns in sets]
        site_ids = torch.cat([m[ns.site_ids] if len(ns) else ns.site_ids for m, ns in zip(remap, sets)])
        layers = torch.cat([ns.layers for ns in sets])
        indices = torch.cat([ns.indices for ns in sets])
        scores = torch.cat([ns.scores for ns in sets])
        stride_i = int(indices.max()) + 1 if indices.numel() else 1
        stride_l = (int(layers.max()) + 1 if layers.numel() else 1) * stride_i
        key = site_ids * stride_l + layers * stride_i + indices
        _, inverse = key.unique(return_inverse=True)
        first = torch.full((int(inverse.max()) + 1 if inverse.numel() else 0,), key.numel(), dtype=torch.int64)
        first.scatter_reduce_(0, inverse, torch.arange(key.numel()), reduce="amin")
        keep = first.sort().values
        shaped = next((ns for ns in sets if ns.widths is not None), self)
        return NeuronSet(
            names,
            site_ids[keep],
            layers[keep],
            indices[keep],
            scores[keep],
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
        scores = [None if math.isnan(s) else s for s in self.scores.tolist()]
        names = [self.site_names[i] for i in self.site_ids.tolist()]
        neurons = [
            {"site": s, "layer": la, "index": ix, "score": sc}
            for s, la, ix, sc in zip(names, self.layers.tolist(), self.indices.tolist(), scores)
        ]
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "model": self.model,
            "num_layers": self.num_layers,
            "widths": self.widths,
            "params": self.params,
            "sources": self.sources,
            "package_version": __version__,
            "count": len(self),
            "neurons": neurons,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set as JSON, atomically."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str = "neuron set") -> NeuronSet:
        """Build a set from its JSON form; malformed input raises :class:`InputError` naming ``where``."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if "top_neurons" in data and "neurons" not in data:
            return cls._from_reference_dict(data, where)
        if data.get("format") != FORMAT:
            raise InputError(
                f"{where}: not a culture-neurons neuron set (format {data.get('format')!r}; expected {FORMAT!r} or the reference 'top_neurons' JSON)"
            )
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(
                f"{where}: neuron-set format v{data.get('format_version')} is newer than this package supports (v{FORMAT_VERSION})"
            )
        rows = data.get("neurons")
        if not isinstance(rows, list):
            raise InputError(f"{where}: key 'neurons' (a list) is missing")
        try:
            sites = [str(r["site"]) for r in rows]
            layers = [_int(r["layer"]) for r in rows]
            indices = [_int(r["index"]) for r in rows]
            scores = [None if r.get("score") is None else float(r["score"]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            bad = next((i for i, r in enumerate(rows) if not _row_ok(r, ("site", "layer", "index"))), 0)
            raise InputError(f"{where}: neuron #{bad} needs site, layer and index (integers): {rows[bad]!r}") from exc
        if "count" in data and int(data["count"]) != len(rows):
            raise InputError(f"{where}: says count={data['count']} but lists {len(rows)} neurons (truncated file?)")
        return cls.from_columns(
            sites,
            torch.tensor(layers, dtype=torch.int64),
            torch.tensor(indices, dtype=torch.int64),
            scores,
            kind=str(data.get("kind", "custom")),
            num_layers=data.get("num_layers"),
            widths=data.get("widths"),
            model=data.get("model"),
            params=data.get("params"),
            sources=data.get("sources"),
            where=where,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeuronSet:
        """Read a set written by :meth:`save` (or a reference ``top_neurons`` JSON)."""
        return cls.from_dict(_read_json(path), str(path))

    # -- the reference format ---------------------------------------------------------------------

    @classmethod
    def from_reference(cls, path: str | os.PathLike, shape: Any = None, kind: str = "reference") -> NeuronSet:
        """Import a neuron JSON published with the paper's code.

        ``shape`` (a ScoreTable, a ModelAdapter, or ``(num_layers, widths)``) tells the set which
        model it belongs to, so out-of-range neurons are rejected now rather than at intervention time.
        """
        data = _read_json(path)
        if not isinstance(data, dict) or "top_neurons" not in data:
            raise InputError(f"{path}: not a reference neuron JSON (no 'top_neurons' key)")
        return cls._from_reference_dict(data, str(path), shape, kind)

    @classmethod
    def _from_reference_dict(cls, data: dict, where: str, shape: Any = None, kind: str = "reference") -> NeuronSet:
        rows = data["top_neurons"]
        if not isinstance(rows, list):
            raise InputError(f"{where}: 'top_neurons' must be a list")
        sites, layers, indices, scores = [], [], [], []
        for i, r in enumerate(rows):
            if not _row_ok(r, ("module_name", "layer_idx", "neuron_idx")):
                raise InputError(
                    f"{where}: top_neurons[{i}] needs module_name, layer_idx and neuron_idx (integers): {r!r}"
                )
            sites.append(reference_site(str(r["module_name"]), f"{where}: top_neurons[{i}]"))
            layers.append(_int(r["layer_idx"]))
            indices.append(_int(r["neuron_idx"]))
            score = r.get("attribute_score")
            scores.append(None if score is None else float(score))
        num_layers, widths = _shape_of(shape)
        model = {"name_or_path": data["model_name"]} if data.get("model_name") else {}
        if shape is not None and hasattr(shape, "model_id"):
            model = {**shape.model_id, **model}
        sources = {"reference_file": Path(where).name, "dataset_ids": data.get("dataset_ids")}
        return cls.from_columns(
            sites,
            torch.tensor(layers, dtype=torch.int64),
            torch.tensor(indices, dtype=torch.int64),
            scores,
            kind=kind,
            num_layers=num_layers,
            widths=widths,
            model=model,
            params={"imported_from": "reference"},
            sources=sources,
            where=where,
        )

    def to_reference_dict(
        self, model_name: str | None = None, dataset_ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The reference code's JSON form (``top_neurons`` with ``module_name``, ...)."""
        unsupported = [s for s in self.sites if s not in _EXPORT_NAMES]
        if unsupported:
            raise InputError(
                f"the reference format has no module name for site(s) {unsupported}; it knows {', '.join(_EXPORT_NAMES)}"
            )
        scores = [None if math.isnan(s) else s for s in self.scores.tolist()]
        names = [_EXPORT_NAMES[self.site_names[i]] for i in self.site_ids.tolist()]
        rows = [
            {"module_name": m, "layer_idx": la, "neuron_idx": ix, "attribute_score": sc}
            for m, la, ix, sc in zip(names, self.layers.tolist(), self.indices.tolist(), scores)
        ]
        if dataset_ids is None:
            dataset_ids = self.sources.get("dataset_ids") or [
                t.get("dataset") for t in self.sources.get("dataset_tables", []) if isinstance(t, dict)
            ]
        return {
            "model_name": model_name or self.model.get("name_or_path"),
            "dataset_ids": list(dataset_ids or []),
            "top_neurons": rows,
        }

    def to_reference(
        self, path: str | os.PathLike, model_name: str | None = None, dataset_ids: Sequence[str] | None = None
    ) -> Path:
        """Write the reference code's JSON form, atomically."""
        path = Path(path)
        write_json_atomic(path, self.to_reference_dict(model_name, dataset_ids))
        return path


def reference_site(module_name: str, where: str = "reference neuron") -> str:
    """Map a reference ``module_name`` (``mlp.gate_proj``, ``model.layers.3.self_attn.q_proj``, or a
    canonical site name) to a canonical site."""
    if module_name in SITE_ORDER:
        return module_name
    last = module_name.rsplit(".", 1)[-1]
    if last in REFERENCE_MODULES:
        return REFERENCE_MODULES[last]
    raise InputError(
        f"{where}: unknown module_name {module_name!r}; expected one of {', '.join(_EXPORT_NAMES.values())} "
        "(fused projections such as qkv_proj are not part of the reference format)"
    )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def _row_ok(row: Any, keys: Sequence[str]) -> bool:
    if not isinstance(row, dict) or any(k not in row for k in keys):
        return False
    try:
        for k in keys[1:]:
            _int(row[k])
    except ValueError:
        return False
    return True


def _read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"neuron set {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text") from exc
    if not text.strip():
        raise InputError(f"{path}: the neuron-set file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from exc


def _shape_of(shape: Any) -> tuple[int | None, dict[str, int] | None]:
    """``(num_layers, widths)`` from a ScoreTable, a ModelAdapter, a NeuronSet or a tuple."""
    if shape is None:
        return None, None
    if isinstance(shape, NeuronSet):
        return shape.num_layers, shape.widths
    if hasattr(shape, "widths") and hasattr(shape, "num_layers"):
        return int(shape.num_layers), dict(shape.widths)
    if isinstance(shape, tuple) and len(shape) == 2:
        return int(shape[0]), {str(k): int(v) for k, v in dict(shape[1]).items()}
    raise InputError(f"shape must be a ScoreTable, a ModelAdapter or (num_layers, widths), not {type(shape).__name__}")


def _check_same_shape(a: NeuronSet, b: NeuronSet) -> None:
    if a.num_layers is not None and b.num_layers is not None and a.num_layers != b.num_layers:
        raise InputError(
            f"cannot combine NeuronSets of different models: {a.kind!r} has {a.num_layers} layers, {b.kind!r} has {b.num_layers}"
        )
    if a.widths is not None and b.widths is not None:
        clash = {s: (a.widths[s], b.widths[s]) for s in set(a.widths) & set(b.widths) if a.widths[s] != b.widths[s]}
        if clash:
            raise InputError(
                f"cannot combine NeuronSets of different models: widths differ {clash} ({a.kind!r} vs {b.kind!r})"
            )
    ha, hb = a.model.get("config_sha256"), b.model.get("config_sha256")
    if ha and hb and ha != hb:
        raise InputError(
            f"cannot combine NeuronSets of different models ({a.model.get('name_or_path')!r} vs {b.model.get('name_or_path')!r})"
        )
