"""Continuation log-likelihoods: the one implementation behind every answer-text measure.

A *row* is a prompt followed by a continuation whose tokens are scored under teacher forcing. The
model reads ``prompt + continuation[:-1]``; the log-probability of continuation token ``j`` is read
at position ``len(prompt) - 1 + j``. The three attribution targets and the ``loglik`` evaluation
scorer are all built from rows:

- ``label``: one row per example; the continuation is the first token of the gold label.
- ``answer``: one row per example; the continuation is the whole gold answer text.
- ``choice`` and the ``loglik`` scorer: one row per option; the per-row mean log-probability is
  the option's length-normalised log-likelihood, and a softmax over an example's rows gives the
  option probabilities.

Public API:

- :func:`prompt_texts` — render prompts as the model reads them (chat template or raw);
- :func:`length_batches` — example indices sorted by length and cut into batches;
- :func:`encode_rows` — tokenise prompt/continuation pairs into :class:`Row` (checks token boundaries);
- :func:`collate_rows` — pad rows of several examples into a :class:`RowBatch`;
- :func:`continuation_logprobs` — one forward pass, logits only where scored, ``[rows, K]``;
- :func:`mean_logprob`, :func:`grouped_softmax` — length normalisation and the per-example softmax;
- :func:`option_texts`, :func:`gold_option` — an example's options and the gold one;
- :func:`shared_prefix_forward`, :func:`shared_prefix_logprobs` — row log-probabilities with each prompt run once
  (KV cache),
  differentiable through the cache (the ``choice`` target) or gradient-free (evaluation);
- :func:`packed_forward`, :func:`packed_option_logprobs` — an example's prompt and all its options packed in one
  sequence under a custom attention mask, one forward pass (where :func:`packs` says the attention allows it);
- :func:`option_loglik_batches`, :func:`option_logliks` — batched, gradient-free option log-likelihoods for evaluation.
"""

from .logprobs import continuation_logprobs, grouped_softmax, mean_logprob, option_loglik_batches, option_logliks
from .packed import Packed, packed_forward, packed_option_logprobs, packs
from .prefix import SharedPrefix, shared_prefix_forward, shared_prefix_logprobs, supports_shared_prefix
from .rows import (
    Row,
    RowBatch,
    collate_rows,
    encode_rows,
    gold_option,
    gold_positions,
    length_batches,
    option_continuation,
    option_rows,
    option_texts,
    prompt_texts,
)

__all__ = [
    "Packed",
    "Row",
    "RowBatch",
    "SharedPrefix",
    "collate_rows",
    "continuation_logprobs",
    "encode_rows",
    "gold_option",
    "gold_positions",
    "grouped_softmax",
    "length_batches",
    "mean_logprob",
    "option_continuation",
    "option_loglik_batches",
    "option_logliks",
    "option_rows",
    "option_texts",
    "packed_forward",
    "packed_option_logprobs",
    "packs",
    "prompt_texts",
    "shared_prefix_forward",
    "shared_prefix_logprobs",
    "supports_shared_prefix",
]
