"""Channel means for mean ablation: the average activation of every channel over a reference set.

Mean ablation (``intervene(..., op="mean", means=...)``) replaces a channel's output with its mean
over the real (non-padding) token positions of reference examples' prompts, rendered as the
evaluation reads them. Because padding is on the right and the models are causal, a real position's
activation does not depend on what else is in its batch, so the mean is independent of batching.

Means cover every channel of the chosen sites (default: all the model's sites), ``[num_layers,
width]`` per site, so one file also serves random sets drawn from the same pools. They are saved
beside a NeuronSet as ``<set>.means.safetensors`` (atomic write; metadata records the model's
config hash, the number of examples and tokens, and the examples' hash).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.example import Example
from ..errors import InputError
from ..fileio import atomic_path, sha256_json
from ..models.adapters import ModelAdapter, get_adapter
from ..models.hooks import forward_hooks
from ..progress import progress as make_bar
from ..selection.neuronset import NeuronSet

MEANS_FORMAT = "culture-neurons-channel-means"
_META_KEY = "culture_neurons_means"


def means_path(neuron_set_path: str | os.PathLike) -> Path:
    """Where the means of a NeuronSet file live: ``general.json`` -> ``general.means.safetensors``."""
    path = Path(neuron_set_path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.means.safetensors")


def _accumulate(
    sums: dict[tuple[str, int], torch.Tensor], adapter: ModelAdapter, sites: Sequence[str], mask: torch.Tensor
):
    """Forward hooks that add each site's per-channel sum over real positions to ``sums`` (float64, CPU)."""
    hooks = []
    for name in sites:
        site = adapter.sites[name]
        for layer, module in enumerate(site.modules):

            def hook(_m, _i, output, site=site, key=(name, layer)):
                out = site.take(output[0] if isinstance(output, tuple) else output)
                m = mask.to(out.device, out.dtype).unsqueeze(-1)
                sums[key] += (out * m).sum(dim=tuple(range(out.dim() - 1))).double().cpu()

            hooks.append((module, hook))
    return hooks


def _token_ids(tokenizer: Any, examples: Sequence[Example], chat_template: bool) -> list[list[int]]:
    from ..likelihood import prompt_texts

    prompts, add_special = prompt_texts(tokenizer, examples, chat_template)
    ids = tokenizer(prompts, add_special_tokens=add_special)["input_ids"]
    for ex, seq in zip(examples, ids):
        if not seq:
            raise InputError(f"example {ex.id!r}: its prompt tokenises to nothing")
    return ids


def channel_means(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    neuron_set: NeuronSet | None = None,
    batch_size: int = 8,
    *,
    sites: Sequence[str] | None = None,
    chat_template: bool = True,
    site_map: Any = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Mean activation of each channel over all real token positions of ``examples``' prompts.

    Args:
        neuron_set: checked against the model; its sites are always covered.
        sites: the sites to cover (default: every site of the model, so random sets drawn from
            other pools can use the same means).
        chat_template: render prompts as the evaluation does (``EvalOptions.chat_template``).
        progress: show a progress bar over the examples.

    Returns:
        ``{site: float32 [num_layers, width]}``.
    """
    if not examples:
        raise InputError("channel means need at least one reference example")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    adapter = get_adapter(model, site_map)
    if neuron_set is not None:
        from .intervene import check_fits

        check_fits(neuron_set, adapter, model)
    chosen = list(sites) if sites is not None else list(adapter.sites)
    if neuron_set is not None:
        chosen += [s for s in neuron_set.sites if s not in chosen]
    unknown = [s for s in chosen if s not in adapter.sites]
    if unknown:
        raise InputError(
            f"unknown site(s) {', '.join(unknown)}; this {adapter.family} model has {', '.join(adapter.sites)}"
        )
    ids = _token_ids(tokenizer, examples, chat_template)
    sums = {
        (s, layer): torch.zeros(adapter.sites[s].width, dtype=torch.float64)
        for s in chosen
        for layer in range(adapter.num_layers)
    }
    device = model.get_input_embeddings().weight.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
    tokens = 0
    with torch.no_grad(), make_bar(total=len(order), desc="channel means", unit="ex", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = [ids[i] for i in order[start : start + batch_size]]
            width = max(map(len, batch))
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):  # right padding: real positions never see a pad token
                input_ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            tokens += int(mask.sum())
            with forward_hooks(_accumulate(sums, adapter, chosen, mask)):
                model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
            bar.update(len(batch))
    return {s: torch.stack([sums[(s, layer)] / tokens for layer in range(adapter.num_layers)]).float() for s in chosen}


def save_means(
    means: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    model: Any = None,
    examples: Sequence[Example] | None = None,
) -> Path:
    """Write ``means`` as safetensors, atomically, with provenance in the metadata.

    ``model``: the model (or its :func:`~culture_neurons.models.loading.model_identity` dict).
    """
    from safetensors.torch import save_file

    meta: dict[str, Any] = {"format": MEANS_FORMAT, "version": 1}
    if isinstance(model, Mapping):
        meta["model"] = dict(model)
    elif model is not None and getattr(model, "config", None) is not None:
        from ..models.loading import model_identity

        meta["model"] = model_identity(model)
    if examples is not None:
        meta["examples"] = {"count": len(examples), "ids_sha256": sha256_json([ex.id for ex in examples])}
    path = Path(path)
    tensors = {str(k): v.detach().float().cpu().contiguous() for k, v in means.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, sort_keys=True, default=str)})
    return path


def load_means(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read means written by :func:`save_means`; a missing, corrupt or foreign file raises :class:`InputError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"channel means file {path} does not exist (compute it with --mean-examples)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            out = {k: fh.get_tensor(k).float() for k in fh.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise InputError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    if _META_KEY not in meta:
        raise InputError(
            f"{path} is a safetensors file but not culture-neurons channel means (no '{_META_KEY}' metadata)"
        )
    bad = [k for k, v in out.items() if v.dim() != 2 or not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"{path}: channel means of site(s) {', '.join(bad)} are not a finite [layers, width] table")
    return out


def means_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance stored by :func:`save_means`; {} if unreadable.

    Keys: ``format``, ``version``, ``model``, ``examples``.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {}).get(_META_KEY, "{}"))
    except Exception:  # load_means reports unreadable files; here a best-effort read is enough
        return {}


def check_means_model(path: str | os.PathLike, model: Any) -> str | None:
    """A warning when the means in ``path`` were computed on a model whose config differs from ``model``'s.

    None when they match.
    """
    from ..models.loading import model_identity

    recorded = (means_metadata(path).get("model") or {}).get("config_sha256")
    if not recorded or getattr(model, "config", None) is None:
        return None
    if recorded != model_identity(model)["config_sha256"]:
        name = (means_metadata(path).get("model") or {}).get("name_or_path")
        return (
            f"warning: channel means {path} were computed on {name!r}, whose config differs from this model's; "
            "check that it is the same model"
        )
    return None
