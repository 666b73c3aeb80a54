"""The scoring methods' cost: ig against captum's LayerIntegratedGradients on the same work, and every
method as a ratio to gxa.

    pip install captum                       # optional; the captum row is skipped without it
    python benchmarks/bench_methods.py       # a small random Llama: ig costs sites x layers x steps passes
    python benchmarks/bench_methods.py --hidden 1024 --intermediate 2816 --layers 8 --examples 8 --steps 16

ig is integrated gradients of p with respect to one site module's output at a time (zero baseline),
every site of every layer in turn, the steps of a batch in one pass; captum computes the same with
``LayerIntegratedGradients`` on each site module, on the engine's own batches (length-sorted,
left-padded), with the same rule and steps. captum takes its baselines in input space, so its input
is a gate: 1 runs the model as it is, 0 makes a forward hook zero the site's output; captum records
the layer under both and interpolates between them, as it would for any layer baseline. Both are
reduced the same way (p × max over real positions, summed per group).

1. Equality first: the relative error of captum's sums against our ScoreTable and the overlap of
   the top-1% neuron sets per group.
2. Interleaved timings (each repeat rotates the order; medians) of wall and CPU time for gxa,
   atp-mean, ig, ig-joint and captum's ig, then each one's peak extra memory in a fresh process of
   its own after a warm-up run (as in bench_peers.py), then the ratios to gxa and ig's to captum.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import Batches, compare, label_prob, timed
from bench_scoring import (
    add_issue_model_args,
    child_peak,
    issue_model,
    load_average,
    peaks_in_children,
    random_examples,
    timing_allocator,
    word_tokenizer,
)

from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions
from culture_neurons.models.adapters import get_adapter

METHODS = ("gxa", "atp-mean", "ig", "ig-joint")


def captum_ig(model, batches: Batches, sites: list[str], steps: int, rule: str) -> dict:
    """captum's LayerIntegratedGradients on every site module in turn, reduced as the engine reduces ig."""
    from captum.attr import LayerIntegratedGradients

    adapter = get_adapter(model)
    modules = [(s, layer, m) for s in sites for layer, m in enumerate(adapter.sites[s].modules)]
    gate: dict[str, torch.Tensor] = {}

    def gated(_module, _inputs, output):
        return torch.where(gate["g"].view(-1, 1, 1) > 0.5, output, torch.zeros_like(output))

    def forward(g, *args):
        gate["g"] = g
        return label_prob(model, *args)

    out = {(s, layer): None for s, layer, _ in modules}
    flags = [(q, q.requires_grad) for q in model.parameters()]
    handles = [m.register_forward_hook(gated) for _, _, m in modules]
    try:
        for q, _ in flags:
            q.requires_grad_(False)
        for b, groups in batches.items:
            args = (b.input_ids, b.attention_mask.long(), b.position_ids, b.score_tok[:, 0])
            ones = torch.ones(b.input_ids.shape[0], device=b.input_ids.device)
            with torch.no_grad():
                p = forward(ones, *args)
            for s, layer, m in modules:
                attr = LayerIntegratedGradients(forward, m).attribute(
                    ones, baselines=torch.zeros_like(ones), additional_forward_args=args, n_steps=steps, method=rule
                )
                best = attr.float().masked_fill(~b.attention_mask[..., None], float("-inf")).amax(1) * p[:, None]
                if out[(s, layer)] is None:
                    out[(s, layer)] = torch.zeros(len(batches.groups), best.shape[1], device=best.device)
                out[(s, layer)].index_add_(0, groups, best)
                del attr
    finally:
        for h in handles:
            h.remove()
        for q, flag in flags:
            q.requires_grad_(flag)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_issue_model_args(ap, examples=8)
    ap.set_defaults(hidden=256, intermediate=704, layers=4, tokens=48, batch_size=4)
    ap.add_argument("--steps", type=int, default=16, help="ig steps (ours and captum's)")
    ap.add_argument("--rule", default="gausslegendre", help="quadrature rule (ours and captum's)")
    ap.add_argument("--sites", default=None, help="comma-separated sites (default: all)")
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # a child that measures one method
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    timing_allocator()
    model = issue_model(args.hidden, args.intermediate, args.layers).to(args.device)
    tokenizer = word_tokenizer(32000)
    examples = random_examples(args.examples, args.tokens, 32000)
    batches = Batches(tokenizer, examples, args.batch_size, args.device)
    sites = args.sites.split(",") if args.sites else get_adapter(model).site_names
    common = dict(batch_size=args.batch_size, chat_template=False, sites=tuple(sites))
    engines = {
        m: ScoringEngine(model, tokenizer, ScoringOptions(method=m, ig_steps=args.steps, ig_rule=args.rule, **common))
        for m in METHODS
    }
    every: dict[str, Callable[[], object]] = {
        m: (lambda e=e: e.score(examples, progress=False)) for m, e in engines.items()
    }
    every["captum ig"] = lambda: captum_ig(model, batches, sites, args.steps, args.rule)
    if args.memory_of:
        child_peak(every[args.memory_of], args.device)
        return
    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} threads, load average {load_average()}; "
        f"random Llama {args.hidden}x{args.intermediate}x{args.layers}, {len(examples)} examples of ~{args.tokens} "
        f"tokens in {len(batches.items)} batches; sites {','.join(sites)}; {args.steps} {args.rule} steps"
    )
    names = list(METHODS)
    if importlib.util.find_spec("captum") is None:
        print("(captum not installed: pip install captum; its row is skipped)")
    else:
        compare(
            engines["ig"].score(examples, progress=False), captum_ig(model, batches, sites, args.steps, args.rule), "ig"
        )
        names.append("captum ig")
    results: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no method always runs first
            results[name].append(timed(every[name], args.device))
    med = {name: {k: statistics.median(x[k] for x in rs) for k in ("wall", "cpu")} for name, rs in results.items()}
    for name, peak in peaks_in_children(names, sys.argv).items():
        med[name]["peak"] = peak
    base = med["gxa"]
    print(f"\n{'method':10s} {'wall s':>8s} {'cpu s':>8s} {'peak MiB':>9s} {'time/gxa':>9s} {'peak/gxa':>9s}")
    for name, m in med.items():
        peak_ratio = f"{m['peak'] / base['peak']:8.2f}x" if base["peak"] >= 2**20 else f"{'n/a':>9s}"
        print(
            f"{name:10s} {m['wall']:8.2f} {m['cpu']:8.2f} {m['peak'] / 2**20:9.1f} "
            f"{m['wall'] / base['wall']:8.2f}x {peak_ratio}"
        )
    print(
        f"(medians of {args.repeats} interleaved repeats; peak = extra memory over the start of one run, "
        "after a warm-up run, in a fresh process of its own)"
    )
    if "captum ig" in med:
        ig, cap = med["ig"], med["captum ig"]
        print(
            f"ig: {ig['wall'] / cap['wall']:.2f}x captum's time, {ig['peak'] / cap['peak']:.2f}x its peak extra memory"
        )


if __name__ == "__main__":
    main()
