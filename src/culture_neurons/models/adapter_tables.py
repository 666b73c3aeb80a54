"""The per-family adapter tables: where each canonical site lives inside one decoder layer.

A family is data, not a branch. Each :class:`Family` maps the canonical sites (:data:`SITES`) to a
module path relative to one decoder layer, plus an optional :class:`Split` for fused projections.
Adding a family means adding one table below and one tiny-model test; resolving a table against a
loaded model is :func:`culture_neurons.models.adapters.get_adapter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

SITES = ("mlp.gate", "mlp.up", "mlp.in", "attn.q", "attn.k", "attn.v")


@dataclass(frozen=True)
class Split:
    """How to cut one part out of a fused projection's output channels.

    ``layout="blocks"``: the output is ``[part0 | part1 | ...]`` with the given sizes.
    ``layout="heads"``: the output is ``[head0: part0 | part1 | ..., head1: ...]``, i.e. the parts are
    interleaved per attention head with the given per-head sizes (GPT-NeoX).

    Sizes are ints or names resolved from the model config: ``q`` (heads × head_dim), ``kv``
    (kv_heads × head_dim), ``ffn`` (intermediate size), ``hidden`` and ``head_dim``.
    """

    layout: Literal["blocks", "heads"]
    sizes: tuple[int | str, ...]
    part: int


@dataclass(frozen=True)
class SiteSpec:
    """One canonical site: a module path inside a decoder layer, optionally a slice of its output."""

    module: str
    split: Split | None = None


@dataclass(frozen=True)
class Writers:
    """Where a decoder layer writes its sites' channels back into the residual stream (the logit lens).

    ``mlp`` and ``attn`` are the output projections inside one layer; ``final_norm`` the candidate paths
    (from the model root) of the norm before the unembedding, the first that exists is used.
    ``sandwich`` names the norms some layers put on a sublayer's output before the residual add
    (Gemma 2/3, OLMo 2: ``(after the MLP, after the attention)``); they count only where the layer has
    the first, since in Llama-style layers the second name is the norm *before* the MLP.
    """

    mlp: str
    attn: str
    final_norm: tuple[str, ...]
    sandwich: tuple[str, str] | None = None


@dataclass(frozen=True)
class NormRule:
    """How a norm class applies its weight: the effective elementwise weight is ``offset + weight``
    (1 for Gemma's ``x * (1 + weight)``), after subtracting the mean when ``centred`` (LayerNorm)."""

    offset: float = 0.0
    centred: bool = False


# Norm classes by name. Any other class whose name ends in "RMSNorm" multiplies by its weight (Llama).
NORM_RULES: Mapping[str, NormRule] = {
    "GemmaRMSNorm": NormRule(offset=1.0),
    "Gemma2RMSNorm": NormRule(offset=1.0),
    "Gemma3RMSNorm": NormRule(offset=1.0),
    "LayerNorm": NormRule(centred=True),
    "CohereLayerNorm": NormRule(centred=True),
    "Cohere2LayerNorm": NormRule(centred=True),
    "OlmoLayerNorm": NormRule(centred=True),  # no weight at all
}

# What each site's channel writes through: the layer's MLP or attention output projection. A query or
# key channel only shapes the attention pattern, so it has no output direction (absent here).
WRITES: Mapping[str, str] = {"mlp.gate": "mlp", "mlp.up": "mlp", "mlp.in": "mlp", "attn.v": "attn"}

_SANDWICH = ("post_feedforward_layernorm", "post_attention_layernorm")


@dataclass(frozen=True)
class Family:
    """A declarative adapter for one architecture family (``writers``: for the logit lens, None if unknown)."""

    name: str
    model_types: tuple[str, ...]
    layers: tuple[str, ...]
    sites: Mapping[str, SiteSpec]
    writers: Writers | None = None


def _gated(q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", gate="mlp.gate_proj", up="mlp.up_proj"):
    return {
        "mlp.gate": SiteSpec(gate),
        "mlp.up": SiteSpec(up),
        "attn.q": SiteSpec(q),
        "attn.k": SiteSpec(k),
        "attn.v": SiteSpec(v),
    }


def _fused(
    module: str, sizes: tuple[int | str, ...], names: Sequence[str], layout: Literal["blocks", "heads"] = "blocks"
):
    return {name: SiteSpec(module, Split(layout, sizes, i)) for i, name in enumerate(names)}


FAMILIES: tuple[Family, ...] = (
    Family(
        "llama",
        (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "olmo",
            "olmo2",
            "granite",
            "cohere",
            "cohere2",
            "smollm3",
            "ministral",
            "helium",
            "glm",
            "exaone4",
            "arcee",
        ),
        ("model.layers",),
        _gated(),
        Writers("mlp.down_proj", "self_attn.o_proj", ("model.norm",), _SANDWICH),
    ),
    # Gemma 3: the text-only Gemma3ForCausalLM (model_type gemma3_text, e.g. Gemma-3-270M and its GGUF)
    # and the multimodal Gemma3ForConditionalGeneration, whose text layers sit under language_model.
    Family(
        "gemma3",
        ("gemma3", "gemma3_text"),
        ("model.layers", "model.language_model.layers", "language_model.model.layers"),
        _gated(),
        Writers(
            "mlp.down_proj",
            "self_attn.o_proj",
            ("model.norm", "model.language_model.norm", "language_model.model.norm"),
            _SANDWICH,
        ),
    ),
    Family(
        "phi3",
        ("phi3",),
        ("model.layers",),
        {
            **_fused("self_attn.qkv_proj", ("q", "kv", "kv"), ("attn.q", "attn.k", "attn.v")),
            **_fused("mlp.gate_up_proj", ("ffn", "ffn"), ("mlp.gate", "mlp.up")),
        },
        Writers("mlp.down_proj", "self_attn.o_proj", ("model.norm",)),
    ),
    Family(
        "phi",
        ("phi",),
        ("model.layers",),
        {
            "mlp.in": SiteSpec("mlp.fc1"),
            "attn.q": SiteSpec("self_attn.q_proj"),
            "attn.k": SiteSpec("self_attn.k_proj"),
            "attn.v": SiteSpec("self_attn.v_proj"),
        },
        Writers("mlp.fc2", "self_attn.dense", ("model.final_layernorm",)),
    ),
    Family(
        "starcoder2",
        ("starcoder2",),
        ("model.layers",),
        {
            "mlp.in": SiteSpec("mlp.c_fc"),
            "attn.q": SiteSpec("self_attn.q_proj"),
            "attn.k": SiteSpec("self_attn.k_proj"),
            "attn.v": SiteSpec("self_attn.v_proj"),
        },
        Writers("mlp.c_proj", "self_attn.o_proj", ("model.norm",)),
    ),
    Family(
        "gpt2",
        ("gpt2",),
        ("transformer.h",),
        {
            "mlp.in": SiteSpec("mlp.c_fc"),
            **_fused("attn.c_attn", ("hidden", "hidden", "hidden"), ("attn.q", "attn.k", "attn.v")),
        },
        Writers("mlp.c_proj", "attn.c_proj", ("transformer.ln_f",)),
    ),
    Family(
        "gpt_neox",
        ("gpt_neox",),
        ("gpt_neox.layers",),
        {
            "mlp.in": SiteSpec("mlp.dense_h_to_4h"),
            **_fused(
                "attention.query_key_value",
                ("head_dim", "head_dim", "head_dim"),
                ("attn.q", "attn.k", "attn.v"),
                "heads",
            ),
        },
        Writers("mlp.dense_4h_to_h", "attention.dense", ("gpt_neox.final_layer_norm",)),
    ),
)
