"""Packed option rows: an example's prompt and all its options in one sequence, one forward pass.

The layout of one example (``|`` marks where the columns of every example line up)::

    pad … pad  prompt  | option 1[:-1]  option 2[:-1]  …  pad … pad

A custom 4-D attention mask lets every prompt token see the prompt causally and every option token
see the whole prompt and the earlier tokens of its own option only; position ids restart at the
prompt's length for each option. Each option therefore computes exactly what it would after its
prompt alone, as the KV-cache path of :mod:`.prefix` does, but without copying the cache once per
option and without padding every option to the longest one. Logits are computed only at the last
prompt column and the option columns (``logits_to_keep`` as indices).

The mask replaces the model's own, so the path applies only where that is safe: eager or SDPA
attention, and no sliding window or chunked attention shorter than the rows (see :func:`packs`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ScoringError
from ..models.adapters import text_config
from .rows import Row
from .tags import batch_examples

_MASKABLE = ("eager", "sdpa")


def packs(model: Any, rows: Sequence[Row]) -> bool:
    """Whether :func:`packed_option_logprobs` computes what the model would on ``rows`` one by one.

    It needs ``position_ids`` and ``logits_to_keep`` in the forward signature, an attention
    implementation that reads a custom additive mask (eager, SDPA), and no attention window the rows
    are longer than (the custom mask would lift it).
    """
    params = inspect.signature(model.forward).parameters
    if "position_ids" not in params or "logits_to_keep" not in params:
        return False
    config = text_config(model.config)
    if getattr(config, "_attn_implementation", None) not in _MASKABLE:
        return False
    longest = max(len(r.input_ids) for r in rows)
    for window in (getattr(config, "sliding_window", None), getattr(config, "attention_chunk_size", None)):
        if window is not None and longest > window:
            return False
    return True


@dataclass
class Packed:
    """The rows of :func:`packed_forward`: one packed sequence per example."""

    logp: torch.Tensor  # [R, K] log-probabilities on the model's device (differentiable under grad), 0 where not valid
    valid: torch.Tensor  # [R, K] bool (CPU)
    slot: torch.Tensor  # [R] the packed sequence (example slot) of each row
    real: torch.Tensor  # [E, T] bool: the prompt and option tokens of each packed sequence
    last_prompt: int  # the column of every sequence's last prompt token


def packed_forward(model: Any, rows: Sequence[Row], pad_id: int) -> Packed:
    """Every option row's log-probabilities from one packed sequence per example (see the module docstring).

    Rows of the same example must share their prompt tokens (an example's option rows do); examples
    keep the order of their first row. Under ``torch.enable_grad`` the gradient at a prompt position
    is the sum over the example's options, as when every row recomputes its prompt.
    """
    device = next(model.parameters()).device
    dtype = model.get_input_embeddings().weight.dtype
    examples: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        examples.setdefault(r.example, []).append(i)
    order = list(examples)
    prompts = [rows[examples[e][0]].input_ids[: rows[examples[e][0]].prompt_len] for e in order]
    width_p = max(len(p) for p in prompts)
    tails = [sum(len(rows[i].targets) - 1 for i in examples[e]) for e in order]
    width = width_p + max(tails)
    n = len(order)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    # segment of each column: -1 padding, 0 prompt, j + 1 option j; a query sees a key when both are
    # real, the key is not later, and the key is prompt or in the query's own segment
    segment = torch.full((n, width), -1, dtype=torch.long)
    k = max(len(r.targets) for r in rows)
    column = torch.zeros((len(rows), k), dtype=torch.long)  # where each target's logit is read (kept columns)
    targets = torch.full((len(rows), k), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), k), dtype=torch.bool)
    for slot, e in enumerate(order):
        prompt = prompts[slot]
        start = width_p - len(prompt)
        ids[slot, start:width_p] = torch.tensor(prompt)
        positions[slot, start:width_p] = torch.arange(len(prompt))
        segment[slot, start:width_p] = 0
        offset = 0
        for j, i in enumerate(examples[e]):
            r = rows[i]
            if r.input_ids[: r.prompt_len] != prompt:
                raise ScoringError(f"the option rows of example {e} do not share their prompt tokens")
            own = r.input_ids[r.prompt_len :]
            cols = slice(width_p + offset, width_p + offset + len(own))
            if own:
                ids[slot, cols] = torch.tensor(own)
                positions[slot, cols] = torch.arange(len(prompt), len(prompt) + len(own))
                segment[slot, cols] = j + 1
            # kept column 0 is the last prompt position; kept column 1 + c is packed column width_p + c
            column[i, : len(r.targets)] = torch.tensor([0, *range(1 + offset, 1 + offset + len(own))])
            targets[i, : len(r.targets)] = torch.tensor(r.targets)
            valid[i, : len(r.targets)] = True
            offset += len(own)
    real = segment >= 0
    same = (segment[:, :, None] == segment[:, None, :]) | (segment[:, None, :] == 0)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = same & causal & real[:, :, None] & real[:, None, :]
    mask = torch.zeros((n, 1, width, width), dtype=dtype).masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    keep = torch.arange(width_p - 1, width)
    with batch_examples(order):
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=False,
            logits_to_keep=keep.to(device),
        )
    logits = out.logits.float()  # [n, kept, V]
    slots = {e: slot for slot, e in enumerate(order)}
    slot_of = torch.tensor([slots[r.example] for r in rows])[:, None].to(logits.device)
    column = column.to(logits.device)
    # log-softmax at the read columns only: the target's logit minus its column's normaliser
    chosen = logits[slot_of, column, targets.to(logits.device)]
    logp = (chosen - logits.logsumexp(-1)[slot_of, column]) * valid.to(logits.device)
    return Packed(logp, valid, slot_of[:, 0].cpu(), real, width_p - 1)


def packed_option_logprobs(model: Any, rows: Sequence[Row], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`packed_forward`'s ``([rows, K] log-probabilities, [rows, K] valid)`` on the CPU.

    Call it under ``torch.no_grad`` for evaluation.
    """
    out = packed_forward(model, rows, pad_id)
    return out.logp.cpu(), out.valid
