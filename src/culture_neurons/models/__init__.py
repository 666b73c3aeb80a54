"""Model loading and per-architecture adapters."""

from .adapters import FAMILIES, Family, ModelAdapter, SiteSpec, Split, get_adapter, load_site_map

__all__ = [
    "FAMILIES",
    "Family",
    "ModelAdapter",
    "SiteSpec",
    "Split",
    "get_adapter",
    "load_site_map",
    "load_model",
    "load_tokenizer",
]


def __getattr__(name: str):
    if name in ("load_model", "load_tokenizer"):
        from . import loading

        return getattr(loading, name)
    raise AttributeError(name)
