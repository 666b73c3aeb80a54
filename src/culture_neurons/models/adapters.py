"""Architecture adapters: where each canonical site lives in a Hugging Face model.

A family is data, not a branch. Each :class:`Family` maps the canonical sites

- ``mlp.gate``, ``mlp.up`` (gated MLPs) or ``mlp.in`` (non-gated MLPs),
- ``attn.q``, ``attn.k``, ``attn.v``,

to a module path relative to one decoder layer, plus an optional :class:`Split` for fused
projections (Phi-3 ``qkv_proj``/``gate_up_proj``, GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``).
The tables live in :mod:`culture_neurons.models.adapter_tables` (re-exported here); this module
resolves them against a loaded model and reads user site maps.

A site's *channels* are always numbered like the unfused projection would number them: for
``attn.q`` channel ``h * head_dim + d`` is dimension ``d`` of head ``h``, whatever the fused layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ArchitectureError
from .adapter_tables import FAMILIES, SITES, Family, SiteSpec, Split, Writers


@dataclass
class Site:
    """A resolved site: its modules per layer and which output channels belong to it."""

    name: str
    module_paths: list[str]
    modules: list[nn.Module]
    width: int
    channels: slice | torch.Tensor  # a slice (contiguous) or a LongTensor of indices into the module output

    @property
    def num_layers(self) -> int:
        return len(self.modules)

    def take(self, out: torch.Tensor) -> torch.Tensor:
        """Select this site's channels from a module output ``[..., out_features]``."""
        if isinstance(self.channels, slice):
            return out[..., self.channels]
        return out.index_select(-1, self.channels.to(out.device))


@dataclass
class HookPoint:
    """One module in one layer, with every site that reads its output (more than one when fused)."""

    layer: int
    path: str
    module: nn.Module
    sites: list[Site] = field(default_factory=list)


@dataclass
class ModelAdapter:
    """The sites of one loaded model, resolved to real modules."""

    family: str
    layers_path: str
    num_layers: int
    sites: dict[str, Site]
    writers: Writers | None = None  # where the sites write back (the logit lens); None when the family says nothing

    @property
    def site_names(self) -> list[str]:
        return list(self.sites)

    @property
    def widths(self) -> dict[str, int]:
        return {name: s.width for name, s in self.sites.items()}

    def hook_points(self, sites: Sequence[str] | None = None) -> list[HookPoint]:
        """Distinct (layer, module) pairs to hook, each listing the sites it feeds."""
        chosen = self.site_names if sites is None else list(sites)
        unknown = [s for s in chosen if s not in self.sites]
        if unknown:
            raise ArchitectureError(
                f"site(s) {', '.join(unknown)} not in this {self.family} model; it has {', '.join(self.sites)}"
            )
        points: dict[tuple[int, int], HookPoint] = {}
        for name in chosen:
            site = self.sites[name]
            for layer, (path, module) in enumerate(zip(site.module_paths, site.modules)):
                key = (layer, path)
                point = points.setdefault(key, HookPoint(layer, path, module))
                point.sites.append(site)
        return [points[k] for k in sorted(points)]

    def describe(self) -> str:
        widths = ", ".join(f"{n}={w}" for n, w in self.widths.items())
        return f"{self.family}: {self.num_layers} layers at {self.layers_path}; {widths}"


# ---------------------------------------------------------------------------------------------
# resolution


def text_config(config: Any) -> Any:
    """The language model's part of a config: the text config of a multimodal wrapper, else the config itself."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _size(name: int | str, config: Any) -> int:
    if isinstance(name, int):
        return name
    tc = text_config(config)
    heads = getattr(tc, "num_attention_heads", None)
    hidden = getattr(tc, "hidden_size", None)
    head_dim = getattr(tc, "head_dim", None) or (hidden // heads if hidden and heads else None)
    kv_heads = getattr(tc, "num_key_value_heads", None) or heads
    values = {
        "q": heads * head_dim if heads and head_dim else None,
        "kv": kv_heads * head_dim if kv_heads and head_dim else None,
        "ffn": getattr(tc, "intermediate_size", None),
        "hidden": hidden,
        "head_dim": head_dim,
    }
    if name not in values:
        raise ArchitectureError(f"unknown split size name {name!r}; use an int or one of {', '.join(values)}")
    if values[name] is None:
        raise ArchitectureError(f"cannot work out split size {name!r} from the model config ({type(tc).__name__})")
    return int(values[name])


def _out_features(module: nn.Module, path: str) -> int:
    for attr in ("out_features", "nf"):  # nn.Linear, GPT-2's Conv1D
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return weight.shape[0]
    raise ArchitectureError(
        f"cannot tell the output width of {path} ({type(module).__name__}); sites must be linear projections"
    )


def _channels(split: Split | None, total: int, config: Any, path: str) -> tuple[slice | torch.Tensor, int]:
    if split is None:
        return slice(None), total
    sizes = [_size(s, config) for s in split.sizes]
    if not 0 <= split.part < len(sizes):
        raise ArchitectureError(f"split part {split.part} out of range for {len(sizes)} parts at {path}")
    if split.layout == "blocks":
        if sum(sizes) != total:
            raise ArchitectureError(
                f"{path} has {total} output channels but the split sizes {sizes} add up to {sum(sizes)}"
            )
        start = sum(sizes[: split.part])
        return slice(start, start + sizes[split.part]), sizes[split.part]
    if split.layout == "heads":
        per_head = sum(sizes)
        if total % per_head:
            raise ArchitectureError(
                f"{path} has {total} output channels, not a multiple of the per-head size {per_head}"
            )
        heads = total // per_head
        offset = sum(sizes[: split.part])
        index = (torch.arange(heads)[:, None] * per_head + offset + torch.arange(sizes[split.part])[None, :]).reshape(
            -1
        )
        return index, index.numel()
    raise ArchitectureError(f"unknown split layout {split.layout!r} at {path}; use 'blocks' or 'heads'")


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _resolve(model: nn.Module, family: Family, layers_path: str) -> ModelAdapter:
    layers = _get(model, layers_path)
    if not isinstance(layers, (nn.ModuleList, nn.Sequential)) or len(layers) == 0:
        raise ArchitectureError(f"{family.name}: {layers_path} is not a non-empty list of decoder layers")
    config = getattr(model, "config", None)
    sites: dict[str, Site] = {}
    for name, spec in family.sites.items():
        if name not in SITES:
            raise ArchitectureError(f"unknown site {name!r} in adapter {family.name}; sites are {', '.join(SITES)}")
        paths, modules = [], []
        for i, layer in enumerate(layers):
            module = _get(layer, spec.module)
            if module is None:
                raise ArchitectureError(f"{family.name}: layer {i} has no module {spec.module!r} for site {name}")
            paths.append(f"{layers_path}.{i}.{spec.module}")
            modules.append(module)
        total = _out_features(modules[0], paths[0])
        channels, width = _channels(spec.split, total, config, paths[0])
        sites[name] = Site(name, paths, modules, width, channels)
    return ModelAdapter(family.name, layers_path, len(layers), sites, family.writers)


def _layer_lists(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return sorted(found, key=lambda nm: -len(nm[1]))


def _fits(layer: nn.Module, family: Family) -> bool:
    return all(_get(layer, spec.module) is not None for spec in family.sites.values())


def _describe_unknown(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    lines = [f"model_type={getattr(config, 'model_type', None)!r}, class={type(model).__name__}"]
    for name, lst in _layer_lists(model)[:3]:
        linears = [n for n, m in lst[0].named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
        lines.append(f"layer list {name!r} ({len(lst)} layers) with projections {linears[:12]}")
    return "; ".join(lines)


def load_site_map(path: str | os.PathLike) -> Family:
    """Read a user site map (TOML or JSON) for a model no built-in adapter knows.

    Format::

        layers = "model.layers"                  # path of the decoder-layer list
        [sites."mlp.gate"]
        module = "mlp.w1"                        # path inside one layer
        [sites."attn.q"]
        module = "attn.wqkv"
        split = { layout = "blocks", sizes = ["q", "kv", "kv"], part = 0 }
    """
    path = Path(path)
    if not path.is_file():
        raise ArchitectureError(f"site map {path} does not exist")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchitectureError(f"site map {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("layers"), str):
        raise ArchitectureError(f"site map {path}: key 'layers' (path of the decoder-layer list) is required")
    raw_sites = raw.get("sites")
    if not isinstance(raw_sites, dict) or not raw_sites:
        raise ArchitectureError(f"site map {path}: table 'sites' with at least one site is required")
    sites: dict[str, SiteSpec] = {}
    for name, entry in raw_sites.items():
        key = f"sites.{name}"
        if name not in SITES:
            raise ArchitectureError(f"site map {path}: {key} is not a site; sites are {', '.join(SITES)}")
        if not isinstance(entry, dict) or not isinstance(entry.get("module"), str):
            raise ArchitectureError(f"site map {path}: {key}.module (a module path inside one layer) is required")
        split = None
        if "split" in entry:
            s = entry["split"]
            try:
                split = Split(str(s["layout"]), tuple(s["sizes"]), int(s["part"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ArchitectureError(f"site map {path}: {key}.split needs layout, sizes and part ({exc})") from exc
        sites[name] = SiteSpec(entry["module"], split)
    return Family(f"site-map:{path.name}", (), (raw["layers"],), sites, _site_map_writers(raw.get("writers"), path))


def _site_map_writers(raw: Any, path: Path) -> Writers | None:
    """A site map's optional ``[writers]`` table: ``mlp``, ``attn`` (inside a layer), ``final_norm`` (from the root)."""
    if raw is None:
        return None
    keys = ("mlp", "attn", "final_norm")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in keys):
        raise ArchitectureError(f"site map {path}: table 'writers' needs strings {', '.join(keys)} (module paths)")
    sandwich = raw.get("sandwich")
    if sandwich is not None and not (isinstance(sandwich, list) and len(sandwich) == 2):
        raise ArchitectureError(f"site map {path}: writers.sandwich must be two norm names [after mlp, after attn]")
    return Writers(raw["mlp"], raw["attn"], (raw["final_norm"],), tuple(sandwich) if sandwich else None)


def get_adapter(model: nn.Module, site_map: str | os.PathLike | Family | None = None) -> ModelAdapter:
    """Resolve the sites of ``model``.

    Order: an explicit ``site_map`` (file or :class:`Family`); the family whose ``model_types``
    contains ``config.model_type``; then any family whose module names fit a decoder-layer list found
    in the module tree. Never guesses beyond that: an unknown model raises
    :class:`ArchitectureError` describing what was found and how to pass a site map.
    """
    if site_map is not None:
        family = site_map if isinstance(site_map, Family) else load_site_map(site_map)
        return _resolve(model, family, family.layers[0])
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            for layers_path in family.layers:
                layers = _get(model, layers_path)
                if layers is not None and len(layers) and _fits(layers[0], family):
                    return _resolve(model, family, layers_path)
    for layers_path, layers in _layer_lists(model):
        for family in FAMILIES:
            if _fits(layers[0], family):
                return _resolve(model, family, layers_path)
    raise ArchitectureError(
        f"no adapter knows this model ({_describe_unknown(model)}). "
        "Pass a site map (--site-map sites.toml) naming the layer list and each site's module; see docs/adapters.md"
    )
