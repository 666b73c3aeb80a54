"""The ScoreTable: accumulated neuron scores of one dataset, stored as safetensors.

File layout: one float32 tensor ``scores/<site>`` shaped ``[layers, channels, groups]`` per site,
``counts`` (int64, ``[groups]``: examples per group) and ``prob_sums`` (float64, ``[groups]``: the
sum of the target probability p per group). The safetensors header carries one metadata entry,
``culture_neurons``, holding JSON: groups in order, model identity, dataset/split, example ids and
their hash, scoring options, the method (``method``: name, baseline and its parameters) and the
package version.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, TableError
from ..fileio import atomic_path, check_input_file

FORMAT = "culture-neurons/score-table"
FORMAT_VERSION = 1
_META_KEY = "culture_neurons"
# Options that change the numbers; tables may only be added when these agree (and their methods: ``method``).
MATH_OPTIONS = ("target", "aggregation", "control", "reference_compat", "dtype")
DEFAULT_METHOD = {"name": "gxa", "baseline": "zero"}


class ScoreTable:
    """Per-site, per-group sums of example scores, with counts and metadata.

    Attributes:
        scores: ``{site: float32 tensor [layers, channels, groups]}``.
        counts: int64 ``[groups]``, examples accumulated per group.
        prob_sums: float64 ``[groups]``, sum of the target probability per group.
        groups: group names, in tensor order.
        meta: JSON-able metadata (model, dataset, split, example ids, options, version).
    """

    def __init__(
        self,
        scores: Mapping[str, torch.Tensor],
        counts: torch.Tensor,
        prob_sums: torch.Tensor,
        groups: list[str],
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.scores = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in scores.items()}
        self.counts = counts.detach().to("cpu", torch.int64).contiguous()
        self.prob_sums = prob_sums.detach().to("cpu", torch.float64).contiguous()
        self.groups = list(groups)
        self.meta = dict(meta or {})
        self._check("table")

    # -- shape and identity ------------------------------------------------------------------

    def _check(self, where: str) -> None:
        g = len(self.groups)
        if len(set(self.groups)) != g:
            raise TableError(f"{where}: duplicate group names in {self.groups}")
        if tuple(self.counts.shape) != (g,) or tuple(self.prob_sums.shape) != (g,):
            raise TableError(f"{where}: counts/prob_sums must have shape [{g}] for {g} groups")
        if not self.scores:
            raise TableError(f"{where}: no site scores")
        layers = {v.shape[0] for v in self.scores.values() if v.dim() == 3}
        for site, t in self.scores.items():
            if t.dim() != 3 or t.shape[2] != g:
                raise TableError(f"{where}: scores/{site} has shape {list(t.shape)}, expected [layers, channels, {g}]")
        if len(layers) != 1:
            raise TableError(f"{where}: sites disagree on the number of layers ({sorted(layers)})")
        if g and int(self.counts.min()) < 0:
            raise TableError(
                f"{where}: tensor 'counts' has a negative count ({int(self.counts.min())}) "
                f"for group {self.groups[int(self.counts.argmin())]!r}"
            )
        if not torch.isfinite(self.prob_sums).all() or (g and float(self.prob_sums.min()) < 0):
            raise TableError(f"{where}: tensor 'prob_sums' holds a negative, NaN or inf value")

    @property
    def sites(self) -> list[str]:
        """Site names in file order."""
        return list(self.scores)

    @property
    def num_layers(self) -> int:
        return next(iter(self.scores.values())).shape[0]

    @property
    def widths(self) -> dict[str, int]:
        return {k: v.shape[1] for k, v in self.scores.items()}

    @property
    def num_examples(self) -> int:
        return int(self.counts.sum())

    @property
    def model_id(self) -> dict[str, Any]:
        return dict(self.meta.get("model", {}))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.meta.get("options", {}))

    @property
    def method(self) -> dict[str, Any]:
        """How the scores were made: ``name``, ``baseline`` and the method's parameters (``steps``, ``rule``,
        ``means``, ``means_sha256``). Tables written before methods existed were made by ``gxa``."""
        return dict(self.meta.get("method") or DEFAULT_METHOD)

    def method_label(self) -> str:
        """The method in a few words, for messages: ``ig (zero baseline, 32 gausslegendre steps)``."""
        m = self.method
        steps = f", {m['steps']} {m.get('rule')} steps" if "steps" in m else ""
        return f"{m.get('name')} ({m.get('baseline')} baseline{steps})"

    def group_index(self, group: str) -> int:
        try:
            return self.groups.index(group)
        except ValueError:
            raise TableError(
                f"group {group!r} not in this table (dataset {self.meta.get('dataset')!r}); "
                f"it has {', '.join(self.groups)}"
            ) from None

    def content_hash(self) -> str:
        """SHA-256 over the tensors, groups and model identity: stable provenance for NeuronSets."""
        h = hashlib.sha256()
        h.update(
            json.dumps(
                {"groups": self.groups, "model": self.model_id, "options": self.options}, sort_keys=True
            ).encode()
        )
        for site in sorted(self.scores):
            h.update(site.encode())
            h.update(self.scores[site].numpy().tobytes())
        h.update(self.counts.numpy().tobytes())
        h.update(self.prob_sums.numpy().tobytes())
        return h.hexdigest()

    # -- the paper's derived scores ----------------------------------------------------------

    def dataset_score(self, site: str) -> torch.Tensor:
        """S_d for one site: the sum over all groups divided by the number of examples, ``[L, C]``."""
        return self.scores[site].sum(-1) / max(self.num_examples, 1)

    def group_score(self, site: str, group: str) -> torch.Tensor:
        """One group's sum divided by the *total* number of examples (the paper's divisor), ``[L, C]``."""
        return self.scores[site][..., self.group_index(group)] / max(self.num_examples, 1)

    def mean_prob(self) -> dict[str, float]:
        """Mean target probability per group."""
        return {g: float(s / c) if c else float("nan") for g, s, c in zip(self.groups, self.prob_sums, self.counts)}

    def to_frame(self, site: str, groups: bool = False) -> Any:
        """One site as a pandas DataFrame, one row per neuron in (layer, index) order: ``site, layer,
        index, score`` (the dataset score S_d) and, with ``groups``, a ``score:<group>`` column per group
        (:meth:`group_score`). :func:`culture_neurons.integrations.frames.score_frame` adds the model's
        module paths and hook names."""
        import pandas as pd

        if site not in self.scores:
            raise TableError(f"site {site!r} not in this table; it has {', '.join(self.sites)}")
        layers, width = self.scores[site].shape[:2]
        data: dict[str, Any] = {
            "site": [site] * (layers * width),
            "layer": torch.arange(layers).repeat_interleave(width).numpy(),
            "index": torch.arange(width).repeat(layers).numpy(),
            "score": self.dataset_score(site).reshape(-1).double().numpy(),
        }
        for group in self.groups if groups else ():
            data[f"score:{group}"] = self.group_score(site, group).reshape(-1).double().numpy()
        return pd.DataFrame(data)

    # -- combining ----------------------------------------------------------------------------

    def compatible_with(self, other: ScoreTable) -> None:
        """Raise :class:`TableError` unless ``other`` was scored on the same model with the same math."""
        mine, theirs = self.model_id.get("config_sha256"), other.model_id.get("config_sha256")
        if mine != theirs:
            raise TableError(
                f"tables come from different models ({self.model_id.get('name_or_path')!r} vs "
                f"{other.model_id.get('name_or_path')!r}: config hashes differ)"
            )
        if self.widths != other.widths or self.num_layers != other.num_layers:
            raise TableError(f"tables have different sites or widths ({self.widths} vs {other.widths})")
        for key in MATH_OPTIONS:
            if self.options.get(key) != other.options.get(key):
                raise TableError(
                    f"tables were scored with different {key!r} "
                    f"({self.options.get(key)!r} vs {other.options.get(key)!r})"
                )
        if self.method != other.method:  # a mean baseline's hash included: shards of one run share their means
            raise TableError(f"tables were scored with different methods ({self.method} vs {other.method})")

    def __add__(self, other: ScoreTable) -> ScoreTable:
        """Sum two tables of the same model and options (shards, resumed runs). Groups are unioned."""
        if not isinstance(other, ScoreTable):
            return NotImplemented
        self.compatible_with(other)
        ids_a, ids_b = self.meta.get("example_ids"), other.meta.get("example_ids")
        if ids_a is not None and ids_b is not None:
            overlap = set(ids_a) & set(ids_b)
            if overlap:
                raise TableError(
                    f"tables share {len(overlap)} example id(s), e.g. {sorted(overlap)[0]!r}; "
                    "an example would count twice"
                )
        groups = self.groups + [g for g in other.groups if g not in self.groups]
        pos_b = torch.tensor([groups.index(g) for g in other.groups])

        def widen(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
            out = t.new_zeros(*t.shape[:-1], len(groups))
            if idx is None:
                out[..., : t.shape[-1]] = t
            else:
                out.index_add_(out.dim() - 1, idx, t)
            return out

        scores = {s: widen(self.scores[s], None) + widen(other.scores[s], pos_b) for s in self.sites}
        counts = widen(self.counts, None) + widen(other.counts, pos_b)
        probs = widen(self.prob_sums, None) + widen(other.prob_sums, pos_b)
        meta = dict(self.meta)
        if other.meta.get("dataset") != self.meta.get("dataset"):
            meta["dataset"] = "+".join(str(d) for d in (self.meta.get("dataset"), other.meta.get("dataset")))
        if ids_a is not None and ids_b is not None:
            ids = list(ids_a) + list(ids_b)
            meta["example_ids"] = ids
            meta["example_ids_sha256"] = hash_ids(ids)
        meta["groups"] = groups
        return ScoreTable(scores, counts, probs, groups, meta)

    # -- files -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table atomically; the previous file (if any) survives any failure."""
        from safetensors.torch import save_file

        for site, t in self.scores.items():
            if not torch.isfinite(t).all():
                raise TableError(f"refusing to write {path}: scores/{site} contains NaN or inf")
        meta = {
            **self.meta,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "groups": self.groups,
            "sites": self.sites,
        }
        tensors = {f"scores/{s}": t for s, t in self.scores.items()}
        tensors["counts"] = self.counts
        tensors["prob_sums"] = self.prob_sums
        path = Path(path)
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ScoreTable:
        """Read a table written by :meth:`save`; a damaged or foreign file raises :class:`TableError`."""
        from safetensors import safe_open

        try:
            path = check_input_file(path, "score table", fifo_ok=False)
        except InputError as exc:
            raise TableError(str(exc)) from None
        try:
            with safe_open(str(path), framework="pt") as fh:
                header = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open handles are not dicts
        except Exception as exc:  # safetensors raises its own error types for truncated/corrupt files
            raise TableError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
        if _META_KEY not in header:
            raise TableError(
                f"{path} is a safetensors file but not a culture-neurons score table (no '{_META_KEY}' metadata)"
            )
        try:
            meta = json.loads(header[_META_KEY])
        except json.JSONDecodeError as exc:
            raise TableError(f"{path}: metadata is not valid JSON ({exc.msg})") from exc
        if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
            raise TableError(f"{path}: unsupported table format {meta.get('format')!r} v{meta.get('format_version')}")
        for key in ("counts", "prob_sums"):
            if key not in tensors:
                raise TableError(f"{path}: tensor {key!r} is missing")
        scores = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("scores/")}
        order = [s for s in meta.get("sites", []) if s in scores]  # safetensors sorts names; keep the written order
        scores = {s: scores[s] for s in order + sorted(set(scores) - set(order))}
        table = cls.__new__(cls)
        table.scores = {k: v.to(torch.float32) for k, v in scores.items()}
        table.counts = tensors["counts"].to(torch.int64)
        table.prob_sums = tensors["prob_sums"].to(torch.float64)
        groups = meta.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(x, str) for x in groups):
            raise TableError(f"{path}: metadata key 'groups' must be a list of group names")
        table.groups = list(groups)
        table.meta = meta
        table._check(str(path))
        _check_meta(path, meta, tensors, table)
        for site, t in table.scores.items():
            if not torch.isfinite(t).all():
                raise TableError(f"{path}: scores/{site} contains NaN or inf")
        return table

    def __repr__(self) -> str:
        sites = ", ".join(f"{s}[{self.num_layers}x{w}]" for s, w in self.widths.items())
        return (
            f"ScoreTable(dataset={self.meta.get('dataset')!r}, groups={len(self.groups)}, "
            f"examples={self.num_examples}, sites={sites})"
        )


def hash_ids(ids: list[str]) -> str:
    """SHA-256 of an ordered list of example ids."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _check_meta(path: Path, meta: dict[str, Any], tensors: Mapping[str, torch.Tensor], table: ScoreTable) -> None:
    """The metadata must agree with the tensors: named sites exist, example ids are complete."""
    sites = meta.get("sites", [])
    if not isinstance(sites, list):
        raise TableError(f"{path}: metadata key 'sites' must be a list of site names")
    missing = [s for s in sites if f"scores/{s}" not in tensors]
    if missing:
        raise TableError(
            f"{path}: metadata key 'sites' names site {missing[0]!r}, but the file has no tensor 'scores/{missing[0]}'"
        )
    for key in ("counts", "prob_sums"):
        if tensors[key].dtype.is_floating_point != (key == "prob_sums"):
            raise TableError(f"{path}: tensor {key!r} has dtype {str(tensors[key].dtype).removeprefix('torch.')}")
    ids = meta.get("example_ids")
    if ids is None:
        return
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise TableError(f"{path}: metadata key 'example_ids' must be a list of strings")
    if len(ids) != table.num_examples:
        raise TableError(
            f"{path}: metadata key 'example_ids' lists {len(ids)} ids "
            f"but tensor 'counts' sums to {table.num_examples} examples (truncated?)"
        )
    if "example_ids_sha256" in meta and meta["example_ids_sha256"] != hash_ids(ids):
        raise TableError(
            f"{path}: metadata key 'example_ids' does not match 'example_ids_sha256' (edited or truncated)"
        )
