"""Mean activations as a baseline: computed on the examples being scored, or given, and laid out per module.

The mean of a channel is its average output over the real token positions of the examples' prompts,
rendered as scoring renders them: the definition of ``intervention.channel_means`` (mean ablation),
computed here from the scoring rows so that attribution stays below intervention in the layers
(the tests check the two agree). Given means (``score_examples(..., means=...)``, e.g.
``channel_means`` of a reference set, or one file's means for a dataset and its control) are
checked against the model's sites and used as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...errors import ScoringError
from ...likelihood import Row, collate_rows, length_batches
from ...models.adapters import HookPoint, ModelAdapter, Site
from ...models.hooks import forward_hooks


def prompt_means(
    model: Any, adapter: ModelAdapter, sites: Sequence[str], rows: Sequence[Sequence[Row]], pad_id: int, batch_size: int
) -> dict[str, torch.Tensor]:
    """``{site: float32 [layers, width]}``: each channel's mean over the real positions of the rows' prompts.

    One gradient-free forward pass per batch of prompts (right-padded, each prompt once: an
    example's first row cut at its prompt length).
    """
    prompts = [
        [Row(i, 0, rs[0].prompt_len, rs[0].input_ids[: rs[0].prompt_len], rs[0].targets[:1])]
        for i, rs in enumerate(rows)
    ]
    sums = {(s, layer): None for s in sites for layer in range(adapter.sites[s].num_layers)}
    hooks = []
    state: dict[str, torch.Tensor] = {}
    for name in sites:
        site = adapter.sites[name]
        for layer, module in enumerate(site.modules):

            def hook(_m, _i, output, site=site, key=(name, layer)):
                out = site.take(output[0] if isinstance(output, tuple) else output)
                mask = state["mask"].to(out.device, torch.float64)[..., None]
                total = (out.double() * mask).sum(dim=(0, 1)).cpu()
                sums[key] = total if sums[key] is None else sums[key] + total

            hooks.append((module, hook))
    device = model.get_input_embeddings().weight.device
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # no dropout in the means, as in scoring
    try:
        tokens = _run(model, prompts, batch_size, pad_id, device, hooks, state)
    finally:
        for m, mode in modes:
            m.training = mode
    return {
        s: torch.stack([sums[(s, layer)] / tokens for layer in range(adapter.sites[s].num_layers)]).float()
        for s in sites
    }


def _run(model: Any, prompts: list, batch_size: int, pad_id: int, device: Any, hooks: list, state: dict) -> int:
    """The gradient-free passes of :func:`prompt_means` over right-padded prompts; the number of real tokens."""
    tokens = 0
    with torch.no_grad(), forward_hooks(hooks):
        for idx in length_batches(prompts, batch_size):
            batch = collate_rows(idx, [prompts[i] for i in idx], pad_id, "right")
            state["mask"] = batch.prompt_mask
            tokens += int(batch.prompt_mask.sum())
            model(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.long().to(device),
                position_ids=batch.position_ids.to(device),
                use_cache=False,
                logits_to_keep=1,
            )
    return tokens


def checked_means(
    means: Mapping[str, torch.Tensor], adapter: ModelAdapter, sites: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Given means, checked: one finite ``[layers, width]`` table for every scored site."""
    out = {}
    for name in sites:
        site = adapter.sites[name]
        if name not in means:
            have = ", ".join(map(str, means)) or "none"
            raise ScoringError(
                f"the given means have no site {name!r} (they have {have}); give every scored site's means"
            )
        t = torch.as_tensor(means[name]).detach().float().cpu()
        want = (site.num_layers, site.width)
        if tuple(t.shape) != want or not bool(torch.isfinite(t).all()):
            raise ScoringError(
                f"the given means of site {name!r} have shape {list(t.shape)}; expected a finite {list(want)} table"
            )
        out[name] = t
    return out


def means_sha256(means: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the sites and their float32 values: which baseline a table used."""
    h = hashlib.sha256()
    for name in sorted(means):
        h.update(name.encode())
        h.update(means[name].float().contiguous().numpy().tobytes())
    return h.hexdigest()


def scatter(sites: Sequence[Site], layer: int, means: Mapping[str, torch.Tensor] | None, width: int) -> torch.Tensor:
    """A module output's baseline, float32 ``[width]``: each site's means at its channels, 0 elsewhere
    (and everywhere when ``means`` is None: the zero baseline)."""
    vec = torch.zeros(width, dtype=torch.float32)
    if means is not None:
        for site in sites:
            vec[site.channels] = means[site.name][layer]
    return vec


def channel_mask(sites: Sequence[Site], width: int) -> torch.Tensor:
    """Bool ``[width]``: the module output channels that belong to ``sites``."""
    mask = torch.zeros(width, dtype=torch.bool)
    for site in sites:
        mask[site.channels] = True
    return mask


class PointBaselines:
    """The baseline of every hook point's output, built once per point and device from site means."""

    def __init__(self, points: Sequence[HookPoint], means: Mapping[str, torch.Tensor]) -> None:
        self.points = list(points)
        self.means = means
        self._cache: dict[tuple[int, torch.device], torch.Tensor] = {}

    def get(self, index: int, width: int, device: torch.device) -> torch.Tensor:
        """Float32 ``[width]`` on ``device`` for hook point ``index`` (whose output has ``width`` channels)."""
        key = (index, device)
        if key not in self._cache:
            point = self.points[index]
            self._cache[key] = scatter(point.sites, point.layer, self.means, width).to(device)
        return self._cache[key]
