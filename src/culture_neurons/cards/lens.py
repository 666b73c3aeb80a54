"""What a neuron writes: the tokens its output direction promotes and suppresses (the logit lens).

A channel's *output direction* ``w`` is where one unit of it goes in the residual stream:

- ``mlp.gate``, ``mlp.up``, ``mlp.in`` channel ``i``: input column ``i`` of the layer's MLP output
  projection (``down_proj``, ``c_proj``, ``fc2``, ``dense_4h_to_h``; :class:`~culture_neurons.models.
  adapter_tables.Writers`). For a gated MLP that is the direction of ``act(gate_i) * up_i``: "promoted"
  means the tokens whose logits rise when that product is positive;
- ``attn.v`` channel ``c`` (dimension ``d`` of key-value head ``h``): the attention output projection's
  input columns of dimension ``d`` of every query head that reads head ``h``, summed (grouped-query
  attention shares one value head among several query heads). This is the direction when those
  heads attend alike; each head's own attention weights scale its share;
- ``attn.q``, ``attn.k``: none (they only shape the attention pattern).

The lens then applies the norms the model puts between that write and the unembedding, elementwise as
the model applies their weights (:data:`~culture_neurons.models.adapter_tables.NORM_RULES`: ``1 + weight``
for Gemma, mean subtraction for LayerNorm): a sublayer-output norm where the layer has one (Gemma 2/3,
OLMo 2), then the final norm, then the unembedding ``W_U``. Each norm's division by the vector's RMS is
a positive number per position and is left out, so the logits rank tokens exactly as the model would
but are per unit of the channel, not a change the model's output would show. The unembedding's bias and
a final logit soft-cap (monotone) are left out too. One matrix product per layer (in column chunks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ArchitectureError
from ..models.adapter_tables import NORM_RULES, WRITES, NormRule
from ..models.adapters import ModelAdapter, get_adapter, text_config
from .neurons import NeuronRef, check_neurons

# Columns of the [vocabulary, columns] logit block computed at once: about 256 MB of float32.
_BLOCK_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class TokenLogit:
    """One token of a lens list: its text, id and logit (per unit of the channel)."""

    token: str
    id: int
    logit: float


@dataclass(frozen=True)
class Lens:
    """What one neuron writes: ``through`` says which weights (None: no output direction, ``note`` says why)."""

    through: str | None
    promoted: tuple[TokenLogit, ...] = ()
    suppressed: tuple[TokenLogit, ...] = ()
    note: str = ""


def no_direction_reason(site: str, adapter: ModelAdapter) -> str | None:
    """Why ``site`` has no output direction in this model, or None when it has one."""
    if site not in WRITES:
        readable = ", ".join(s for s in WRITES if s in adapter.sites)
        return f"{site} has no output direction: it only shapes the attention pattern; the lens reads {readable}"
    if adapter.writers is None:
        return f"no output direction known: the {adapter.family} adapter declares no writers (a site map's [writers])"
    return None


def norm_rule(module: nn.Module, path: str) -> NormRule:
    """How the norm at ``path`` applies its weight (:data:`NORM_RULES`; any ``*RMSNorm`` multiplies by it)."""
    name = type(module).__name__
    rule = NORM_RULES.get(name)
    if rule is None and name.endswith("RMSNorm"):
        rule = NormRule()
    if rule is None:
        raise ArchitectureError(
            f"{path}: the logit lens does not know how norm class {name} applies its weight; "
            "add it to culture_neurons.models.adapter_tables.NORM_RULES"
        )
    return rule


def effective_norm(module: nn.Module, path: str) -> tuple[torch.Tensor | None, bool]:
    """``(elementwise weight or None, subtracts the mean)`` of a norm, checked against the module itself.

    The check feeds the module ``±x`` (an alternating ±1 vector, mean 0): half their difference is the
    effective weight times ``x`` over a positive scale, and adding a constant changes nothing exactly when
    the norm subtracts the mean. A rule that disagrees with the module is an error, never a silent lens.
    """
    rule = norm_rule(module, path)
    weight = getattr(module, "weight", None)
    gamma = None if weight is None else weight.detach().float() + rule.offset
    probe = _probe(module, gamma, rule.centred)
    if probe is not None:
        raise ArchitectureError(f"{path} ({type(module).__name__}) does not apply its weight as declared: {probe}")
    return gamma, rule.centred


def _probe(module: nn.Module, gamma: torch.Tensor | None, centred: bool) -> str | None:
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    width = gamma.numel() if gamma is not None else int(getattr(module, "normalized_shape", (0,))[0])
    if width < 2:
        return None
    x = torch.ones(width, device=device)
    x[1::2] = -1.0
    if width % 2:
        x[-1] = 0.0
    with torch.no_grad():
        out = [module(v.to(dtype)[None]).float()[0] for v in (x, -x, x + 3.0)]
    seen = (out[0] - out[1]) / 2
    expected = x if gamma is None else gamma.to(device) * x
    scale = (seen @ expected) / (expected @ expected).clamp(min=1e-12)
    tol = 1e-2 if dtype != torch.float32 else 1e-4
    if not scale > 0 or (seen - scale * expected).abs().max() > tol * expected.abs().max():
        return "its output is not the declared weight times the input"
    shift_free = bool(((out[2] - out[0]).abs().max() <= tol * out[0].abs().max().clamp(min=1e-6)).item())
    if shift_free != centred:
        return "it subtracts the mean" if shift_free else "it does not subtract the mean"
    return None


def input_columns(module: nn.Module, path: str) -> torch.Tensor:
    """A projection's weight as ``[out_features, in_features]`` (column ``i``: where input ``i`` goes)."""
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear):
        return module.weight
    if isinstance(getattr(module, "nf", None), int) and isinstance(weight, torch.Tensor):  # GPT-2's Conv1D
        return weight.t()
    raise ArchitectureError(f"{path} ({type(module).__name__}) is not a linear projection; the lens needs one")


def _value_columns(model: Any, adapter: ModelAdapter, weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[m, query heads per value head]`` input columns of the attention output for value channels ``index``."""
    heads = int(text_config(model.config).num_attention_heads)
    total, v_width = weight.shape[1], adapter.sites["attn.v"].width
    if total % heads or total % v_width:
        raise ArchitectureError(
            f"attention output has {total} inputs, not a multiple of {heads} heads and of attn.v's {v_width}"
        )
    head_dim, repeat = total // heads, total // v_width
    kv_head, dim = index // head_dim, index % head_dim
    query = kv_head[:, None] * repeat + torch.arange(repeat)[None, :]  # query heads reading each value head
    return query * head_dim + dim[:, None]


def _layer_directions(model: Any, adapter: ModelAdapter, site: str, layer: int, index: torch.Tensor) -> torch.Tensor:
    """``[hidden, m]`` float32 output directions of channels ``index`` of ``site`` in ``layer``, after the
    layer's sublayer-output norm when it has one."""
    writers = adapter.writers
    kind = WRITES[site]
    layer_path = f"{adapter.layers_path}.{layer}"
    block = model.get_submodule(layer_path)
    rel = writers.mlp if kind == "mlp" else writers.attn
    weight = input_columns(block.get_submodule(rel), f"{layer_path}.{rel}").detach()
    if kind == "mlp":
        directions = weight[:, index.to(weight.device)].float()
    else:
        columns = _value_columns(model, adapter, weight, index).to(weight.device)
        directions = weight[:, columns.reshape(-1)].float().reshape(weight.shape[0], *columns.shape).sum(-1)
    if writers.sandwich and _has(block, writers.sandwich[0]):
        post = writers.sandwich[0] if kind == "mlp" else writers.sandwich[1]
        directions = _through(directions, *effective_norm(block.get_submodule(post), f"{layer_path}.{post}"))
    return directions


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _through(directions: torch.Tensor, gamma: torch.Tensor | None, centred: bool) -> torch.Tensor:
    if centred:
        directions = directions - directions.mean(0, keepdim=True)
    return directions if gamma is None else directions * gamma.to(directions.device)[:, None]


def final_norm(model: Any, adapter: ModelAdapter) -> tuple[torch.Tensor | None, bool]:
    """The final norm's effective weight and centring (the first of the writers' ``final_norm`` paths that exists)."""
    for path in adapter.writers.final_norm:
        if _has(model, path):
            return effective_norm(model.get_submodule(path), path)
    raise ArchitectureError(
        f"{adapter.family}: no final norm at {', '.join(adapter.writers.final_norm)}; check the adapter's writers"
    )


def _through_text(model: Any, adapter: ModelAdapter, ref: NeuronRef) -> str:
    """Which weights a neuron writes through, in words."""
    writers = adapter.writers
    if WRITES[ref.site] == "mlp":
        return f"{writers.mlp} input column {ref.index}"
    path = f"{adapter.layers_path}.{ref.layer}.{writers.attn}"
    weight = input_columns(model.get_submodule(path), path)
    head_dim = weight.shape[1] // int(text_config(model.config).num_attention_heads)
    query = (_value_columns(model, adapter, weight, torch.tensor([ref.index]))[0] // head_dim).tolist()
    if len(query) == 1:
        return f"{writers.attn}, query head {query[0]}"
    return f"{writers.attn}, summed over query heads {', '.join(map(str, query))}, which share its value head"


def logit_lens(
    model: Any,
    tokenizer: Any,
    neurons: Sequence[NeuronRef],
    *,
    adapter: ModelAdapter | None = None,
    k: int = 10,
    strict: bool = False,
) -> list[Lens]:
    """The top ``k`` promoted and suppressed tokens of each neuron's output direction (see the module docstring).

    A neuron of a site without an output direction gets a :class:`Lens` with ``through=None`` and the
    reason in ``note``; with ``strict`` that is an :class:`ArchitectureError` instead. Token ids beyond the
    tokenizer (padded embedding rows) are left out.
    """
    adapter = adapter or get_adapter(model)
    refs = list(neurons)
    check_neurons(refs, adapter)
    out: list[Lens | None] = [None] * len(refs)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, ref in enumerate(refs):
        reason = no_direction_reason(ref.site, adapter)
        if reason is not None:
            if strict:
                raise ArchitectureError(f"neuron {ref}: {reason}")
            out[i] = Lens(None, note=reason)
        else:
            groups.setdefault((ref.site, ref.layer), []).append(i)
    if groups:
        unembed = model.get_output_embeddings().weight.detach()
        vocab = min(unembed.shape[0], len(tokenizer))
        gamma, centred = final_norm(model, adapter)
        for (site, layer), members in sorted(groups.items()):
            index = torch.tensor([refs[i].index for i in members])
            directions = _through(_layer_directions(model, adapter, site, layer, index), gamma, centred)
            tops = _top_tokens(unembed[:vocab], directions, k)
            for j, i in enumerate(members):
                promoted = _token_list(tokenizer, *tops[0], j)
                suppressed = _token_list(tokenizer, *tops[1], j)
                out[i] = Lens(_through_text(model, adapter, refs[i]), promoted, suppressed)
    return out  # type: ignore[return-value]


def _top_tokens(
    unembed: torch.Tensor, directions: torch.Tensor, k: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Top-``k`` (values, ids) of ``W_U @ directions`` and of its negation, each ``[k, m]`` on the CPU."""
    k = min(k, unembed.shape[0])
    step = max(1, _BLOCK_ELEMENTS // max(unembed.shape[0], 1))
    high_v, high_i, low_v, low_i = [], [], [], []
    for start in range(0, directions.shape[1], step):
        block = directions[:, start : start + step].to(unembed.device, unembed.dtype)
        logits = (unembed @ block).float()  # [V, m]
        values, ids = logits.topk(k, dim=0)
        high_v.append(values.cpu())
        high_i.append(ids.cpu())
        values, ids = (-logits).topk(k, dim=0)
        low_v.append(-values.cpu())
        low_i.append(ids.cpu())
    return (torch.cat(high_v, 1), torch.cat(high_i, 1)), (torch.cat(low_v, 1), torch.cat(low_i, 1))


def _token_list(tokenizer: Any, values: torch.Tensor, ids: torch.Tensor, column: int) -> tuple[TokenLogit, ...]:
    chosen = ids[:, column].tolist()
    texts = tokenizer.batch_decode([[t] for t in chosen])
    return tuple(TokenLogit(text, t, float(v)) for text, t, v in zip(texts, chosen, values[:, column].tolist()))
