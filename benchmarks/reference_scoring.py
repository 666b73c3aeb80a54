"""A stand-in for the paper's research code, for timing comparisons only (not part of the package).

It reproduces that code's costly habits as described in the project's issue: the model in train
mode with every parameter requiring grad (so backward builds full weight gradients), full-vocabulary
logits at every position, one example per pass, and a Python dict updated per neuron per example,
saved as JSON. The score formula is the same as the package's.

    python benchmarks/reference_scoring.py --model DIR --examples E.jsonl --out scores.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

SITES = {
    "mlp.gate_proj": "mlp.gate_proj",
    "mlp.up_proj": "mlp.up_proj",
    "self_attn.q_proj": "self_attn.q_proj",
    "self_attn.k_proj": "self_attn.k_proj",
    "self_attn.v_proj": "self_attn.v_proj",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(args.device)
    model.train()
    with open(args.examples, encoding="utf-8") as fh:
        examples = [json.loads(line) for line in fh]
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    captured = {}
    for i, layer in enumerate(model.model.layers):
        for name in SITES:
            module = layer.get_submodule(name)

            def hook(_m, _inp, out, key=(name, i)):
                out.retain_grad()
                captured[key] = out

            module.register_forward_hook(hook)
    for ex in examples:
        ids = tok(ex["prompt"], return_tensors="pt")["input_ids"].to(args.device)
        target = tok(ex["prompt"] + ex["answer"])["input_ids"][ids.shape[1]]
        model.zero_grad()
        logits = model(input_ids=ids).logits
        p = torch.softmax(logits[0, -1], -1)[target]
        p.backward()
        for (name, layer), out in captured.items():
            values = (p.detach() * (out.detach()[0] * out.grad[0]).max(0).values).tolist()
            for idx, v in enumerate(values):
                scores[f"{name}.{layer}.{idx}"][ex["group"]] += v
    with open(args.out, "w") as fh:
        json.dump(scores, fh)


if __name__ == "__main__":
    main()
