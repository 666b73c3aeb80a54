"""Modules, their culture-general neuron counts, and the module sets that selective fine-tuning trains.

A *module* is one decoder layer's MLP (gate/up/down, or the family's equivalent) or its attention
(q/k/v/o). Where each family keeps those projections is data, in :data:`MODULE_GROUPS`; a model
that only a site map describes gets its groups from the site modules' parent containers
(``mlp.w1`` -> every linear projection under ``mlp``).

A neuron of site ``mlp.*`` counts towards its layer's MLP, one of ``attn.*`` towards its layer's
attention. :func:`rank_modules` counts them with one ``bincount`` and ranks the modules by count
(ties: lower layer first, MLP before attention). :func:`.choose.choose_modules` then builds the sets:

- ``top``: modules that hold neurons, best ranked first;
- ``bottom``: modules that hold none, in a seeded random order (they all tie at zero, and a fixed
  order would favour some layers);
- ``random``: any module, in a seeded random order;

each filled greedily up to a parameter budget (a fraction of the model's parameters): walk the
order and take every module that still fits, so all three sets end close to the same size.
``full`` trains every parameter (the full fine-tuning baseline), and a list such as
``mlp.3,attn.5`` names modules explicitly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ArchitectureError, InputError
from ..fileio import atomic_path
from ..intervention import check_fits
from ..models.adapters import get_adapter

log = logging.getLogger(__name__)

KINDS = ("mlp", "attn")
NAMED_SETS = ("top", "bottom", "random", "full")
DEFAULT_BUDGET = 0.10


@dataclass(frozen=True)
class ModuleGroups:
    """Where a family keeps its MLP and attention projections, as paths inside one decoder layer."""

    mlp: tuple[str, ...]
    attn: tuple[str, ...]


_LLAMA_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")

# Keyed by the adapter family (models/adapters.py). Norms inside a block (Qwen3's q_norm, ...) are
# not projections and are never trained.
MODULE_GROUPS: dict[str, ModuleGroups] = {
    "llama": ModuleGroups(("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), _LLAMA_ATTN),
    "gemma3": ModuleGroups(("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), _LLAMA_ATTN),
    "phi3": ModuleGroups(("mlp.gate_up_proj", "mlp.down_proj"), ("self_attn.qkv_proj", "self_attn.o_proj")),
    "phi": ModuleGroups(
        ("mlp.fc1", "mlp.fc2"), ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.dense")
    ),
    "starcoder2": ModuleGroups(("mlp.c_fc", "mlp.c_proj"), _LLAMA_ATTN),
    "gpt2": ModuleGroups(("mlp.c_fc", "mlp.c_proj"), ("attn.c_attn", "attn.c_proj")),
    "gpt_neox": ModuleGroups(
        ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"), ("attention.query_key_value", "attention.dense")
    ),
}


def is_conv1d(module: nn.Module) -> bool:
    """GPT-2 style ``Conv1D``: a linear projection that stores its weight transposed."""
    return type(module).__name__ == "Conv1D"


def _is_projection(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_conv1d(module)


def derive_groups(adapter: Any, layer: nn.Module) -> ModuleGroups:
    """Groups for a family without a table: every projection under the containers of its sites."""
    out: dict[str, tuple[str, ...]] = {}
    for kind in KINDS:
        specs = [s.module_paths[0] for name, s in adapter.sites.items() if name.startswith(kind + ".")]
        prefix = f"{adapter.layers_path}.0."
        containers = sorted({p[len(prefix) :].rpartition(".")[0] for p in specs})
        if not containers or "" in containers:
            raise ArchitectureError(
                f"{adapter.family}: cannot tell which container holds the {kind} projections (sites {specs}); "
                "selective fine-tuning needs sites inside an MLP and an attention submodule"
            )
        paths = []
        for container in containers:
            sub = layer.get_submodule(container)
            paths += [f"{container}.{n}" for n, m in sub.named_modules() if n and _is_projection(m)]
        out[kind] = tuple(paths)
    return ModuleGroups(out["mlp"], out["attn"])


def module_groups(model: nn.Module, adapter: Any) -> ModuleGroups:
    """The MLP and attention projection paths of ``model``'s family, checked against layer 0."""
    layers = model.get_submodule(adapter.layers_path)
    groups = MODULE_GROUPS.get(adapter.family)
    if groups is None:
        groups = derive_groups(adapter, layers[0])
        log.info(
            "%s: no module-group table; using the projections under the sites' containers: mlp %s, attn %s",
            adapter.family,
            ", ".join(groups.mlp),
            ", ".join(groups.attn),
        )
    for kind in KINDS:
        paths = getattr(groups, kind)
        if not paths:
            raise ArchitectureError(f"{adapter.family}: no {kind} projections found in {adapter.layers_path}.0")
        for i, layer in enumerate(layers):
            for path in paths:
                try:
                    module = layer.get_submodule(path)
                except AttributeError:
                    raise ArchitectureError(
                        f"{adapter.family}: layer {i} has no {kind} projection {path!r}; "
                        f"add this model's MLP/attention module paths to MODULE_GROUPS in training/modules.py"
                    ) from None
                if not any(True for _ in module.parameters()):
                    raise ArchitectureError(
                        f"{adapter.family}: {adapter.layers_path}.{i}.{path} has no parameters to train"
                    )
    return groups


@dataclass(frozen=True)
class Module:
    """One layer's MLP or attention: its projections, size and culture-general neuron count."""

    layer: int
    kind: str  # "mlp" | "attn"
    paths: tuple[str, ...]  # full module paths, e.g. model.layers.3.mlp.gate_proj
    params: int
    neurons: int = 0
    site_counts: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.layer}"


@dataclass
class ModuleRanking:
    """Every module of a model, best ranked first, with the model's parameter count."""

    modules: list[Module]
    total_params: int
    family: str
    neuron_set: str | None = None  # the NeuronSet's kind

    def by_name(self) -> dict[str, Module]:
        return {m.name: m for m in self.modules}

    def to_frame(self, sets: Mapping[str, ModuleSet] | None = None) -> Any:
        """The ranking as a DataFrame; with ``sets``, one column per set marking its members."""
        import pandas as pd

        sites = sorted({s for m in self.modules for s in m.site_counts})
        rows = []
        for rank, m in enumerate(self.modules, start=1):
            row = {"rank": rank, "module": m.name, "layer": m.layer, "kind": m.kind, "neurons": m.neurons}
            row.update({s: m.site_counts.get(s, 0) for s in sites})
            row.update({"params": m.params, "param_pct": 100.0 * m.params / self.total_params})
            for name, chosen in (sets or {}).items():
                row[f"in_{name}"] = m.name in chosen.names
            rows.append(row)
        return pd.DataFrame(rows)

    def table(self, sets: Mapping[str, ModuleSet] | None = None, limit: int | None = 20) -> str:
        """A text table of the ranking (the first ``limit`` rows, plus every member of ``sets``)."""
        frame = self.to_frame(sets)
        if limit is not None and len(frame) > limit:
            member = frame[[c for c in frame.columns if c.startswith("in_")]].any(axis=1) if sets else False
            keep = (frame["rank"] <= limit) | member
            hidden = int((~keep).sum())
            frame = frame[keep]
        else:
            hidden = 0
        for col in [c for c in frame.columns if c.startswith("in_")]:
            frame[col] = frame[col].map({True: "x", False: ""})
        frame = frame.assign(param_pct=frame["param_pct"].map(lambda v: f"{v:.2f}"))
        text = frame.to_string(index=False)
        if hidden:
            text += f"\n({hidden} more modules with no set membership not shown; the CSV has all {len(self.modules)})"
        return text

    def save(self, path: Any, sets: Mapping[str, ModuleSet] | None = None) -> None:
        """Write the ranking as CSV, atomically."""
        with atomic_path(path, suffix=".csv") as tmp:
            self.to_frame(sets).to_csv(tmp, index=False)


@dataclass(frozen=True)
class ModuleSet:
    """The modules one fine-tuning run trains (``full``: every parameter)."""

    name: str
    modules: tuple[Module, ...]
    params: int
    budget_params: int | None
    total_params: int
    full: bool = False
    seed: int | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for m in self.modules for p in m.paths)

    @property
    def fraction(self) -> float:
        return self.params / self.total_params

    def describe(self) -> str:
        what = "every parameter" if self.full else f"{len(self.modules)} modules ({', '.join(self.names)})"
        budget = "" if self.budget_params is None else f"; budget {self.budget_params:,}"
        return (
            f"{self.name}: {what}, {self.params:,} parameters "
            f"({100 * self.fraction:.2f}% of {self.total_params:,}{budget})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "full": self.full,
            "modules": list(self.names),
            "paths": list(self.paths),
            "params": self.params,
            "budget_params": self.budget_params,
            "total_params": self.total_params,
            "fraction": self.fraction,
            "seed": self.seed,
            "neurons": sum(m.neurons for m in self.modules),
        }


def count_params(model: nn.Module) -> int:
    """Parameters of ``model``, each shared (tied) tensor once."""
    return int(sum(p.numel() for p in model.parameters()))


def list_modules(model: nn.Module, adapter: Any = None) -> list[Module]:
    """Every layer's MLP and attention module, in (layer, kind) order, without neuron counts."""
    adapter = adapter or get_adapter(model)
    groups = module_groups(model, adapter)
    out = []
    for layer in range(adapter.num_layers):
        prefix = f"{adapter.layers_path}.{layer}."
        for kind in KINDS:
            paths = tuple(prefix + p for p in getattr(groups, kind))
            seen: set[int] = set()
            params = 0
            for path in paths:
                for p in model.get_submodule(path).parameters():
                    if id(p) not in seen:
                        seen.add(id(p))
                        params += p.numel()
            out.append(Module(layer, kind, paths, params))
    return out


def neuron_counts(neurons: Any, num_layers: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Neurons per (layer, kind) as int64 ``[num_layers, 2]`` (kind 0 = mlp, 1 = attn).

    Also returns the counts per site as ``[num_layers]`` tensors.
    """
    counts = torch.zeros(num_layers, len(KINDS), dtype=torch.int64)
    per_site: dict[str, torch.Tensor] = {}
    for site, (layers, _) in neurons.by_site().items():
        kind = site.split(".", 1)[0]
        if kind not in KINDS:
            raise InputError(f"NeuronSet {neurons.kind!r}: site {site!r} belongs to neither the MLP nor the attention")
        if layers.numel() and int(layers.max()) >= num_layers:
            raise InputError(
                f"NeuronSet {neurons.kind!r}: {site} layer {int(layers.max())} is out of range "
                f"for a {num_layers}-layer model"
            )
        per_layer = torch.bincount(layers, minlength=num_layers)
        per_site[site] = per_layer
        counts[:, KINDS.index(kind)] += per_layer
    return counts, per_site


def rank_modules(model: nn.Module, neurons: Any = None, adapter: Any = None, site_map: Any = None) -> ModuleRanking:
    """Count ``neurons`` (a NeuronSet, or None for all zeros) per module and rank the modules.

    Order: most neurons first; ties by layer, then MLP before attention.
    """
    adapter = adapter or get_adapter(model, site_map)
    if neurons is not None:
        check_fits(neurons, adapter, model)
    modules = list_modules(model, adapter)
    if neurons is not None:
        counts, per_site = neuron_counts(neurons, adapter.num_layers)
        modules = [
            Module(
                m.layer,
                m.kind,
                m.paths,
                m.params,
                int(counts[m.layer, KINDS.index(m.kind)]),
                {s: int(c[m.layer]) for s, c in per_site.items() if s.startswith(m.kind + ".") and int(c[m.layer])},
            )
            for m in modules
        ]
    modules.sort(key=lambda m: (-m.neurons, m.layer, KINDS.index(m.kind)))
    return ModuleRanking(modules, count_params(model), adapter.family, None if neurons is None else neurons.kind)


def trainable_names(model: nn.Module, module_set: ModuleSet) -> list[str]:
    """Names of the parameters ``module_set`` trains (``named_parameters`` order)."""
    if module_set.full:
        return [n for n, _ in model.named_parameters()]
    prefixes = tuple(p + "." for p in module_set.paths)
    names = [n for n, _ in model.named_parameters() if n.startswith(prefixes)]
    if not names:
        raise InputError(f"module set {module_set.name} matches no parameter of this model")
    return names


@contextlib.contextmanager
def only_trainable(model: nn.Module, names: Sequence[str]) -> Iterator[list[nn.Parameter]]:
    """Make exactly the parameters ``names`` require grad; restore every flag and the mode on exit."""
    wanted = set(names)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    was_training = model.training
    try:
        params = []
        for n, p in model.named_parameters():
            p.requires_grad_(n in wanted)
            if n in wanted:
                params.append(p)
        yield params
    finally:
        for n, p in model.named_parameters():
            if n in before:
                p.requires_grad_(before[n])
        model.train(was_training)
