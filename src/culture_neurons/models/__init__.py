"""Model loading and per-architecture adapters."""

from .adapters import (
    FAMILIES,
    Family,
    ModelAdapter,
    SiteSpec,
    Split,
    get_adapter,
    load_site_map,
)

# Loading pulls in transformers, so these names resolve on first use.
_LOADING = (
    "check_model_access",
    "describe_loaded",
    "load_model",
    "load_tokenizer",
    "model_provenance",
    "validate_device",
)

__all__ = ["FAMILIES", "Family", "ModelAdapter", "SiteSpec", "Split", "get_adapter", "load_site_map", *_LOADING]


def __getattr__(name: str):
    if name in _LOADING:
        from . import loading

        return getattr(loading, name)
    raise AttributeError(name)
