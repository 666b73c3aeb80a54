"""Bridges to the tools researchers already use: lm-evaluation-harness, pandas, TransformerLens, nnsight.

Nothing here is imported by the rest of the package (only the top-level CLI takes the ``evaluate``
command from :mod:`.evaluate_command`), and each bridge imports its tool only when used:
:mod:`.lm_eval_model` (needs ``pip install "culture-neurons[lm-eval]"``), :mod:`.lm_eval_cli`,
:mod:`.frames` (pandas).
"""
