"""culture-neurons scoring against the tools a user would pick instead, side by side in one run.

    pip install captum                        # optional; the captum rows are skipped without it
    python benchmarks/bench_peers.py          # the issue's setup: random Llama 1024x2816x8, 32 examples, batch 8
    python benchmarks/bench_peers.py --examples 16 --repeats 5 --threads 2

The same quantity everywhere: for each example, p (softmax probability of the gold label's first
token) times the max over real positions of activation x gradient at every site module, summed per
group. captum computes it with ``LayerGradientXActivation`` over all site modules in one call
(parameters frozen, as ours); nnsight, when installed, with ``.save()``-d outputs and gradients.
"ours, recompute" is our engine with ``ScoringOptions(recompute=True)`` (each decoder layer run again in the
backward pass instead of keeping its activations): the same scores for less memory.

1. An equality check first: relative error against our ScoreTable and the overlap of the top-1%
   neuron sets per group.
2. Interleaved timings (the methods take turns in each repeat; medians) of wall and CPU time, then
   the peak extra memory of each, measured in a fresh process of its own after one warm-up run
   (CUDA: max allocated; CPU: peak RSS growth, reset via /proc/self/clear_refs, with glibc returning
   every freed buffer over 1 MiB to the OS; that setting would slow timed runs by mapping fresh
   pages for every large tensor, and a fresh process keeps what other methods left in the heap out
   of the number), then a table of ratios. On a shared machine the ratios are what counts.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
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

from culture_neurons.attribution.batching import target_rows
from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions
from culture_neurons.likelihood import collate_rows, length_batches
from culture_neurons.models.adapters import get_adapter


def label_prob(model, input_ids, attention_mask, position_ids, gold):
    """p per row: the probability of the gold token after the (left-padded) prompt."""
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=1, use_cache=False
    ).logits
    return logits[:, -1].float().log_softmax(-1).gather(1, gold[:, None]).squeeze(1).exp()


class Batches:
    """The engine's own batches (length-sorted, left-padded), for every method."""

    def __init__(self, tokenizer, examples, batch_size: int, device: str) -> None:
        rows = target_rows(tokenizer, examples, "label", use_chat_template=False)
        self.groups = sorted({ex.group for ex in examples})
        gidx = {g: i for i, g in enumerate(self.groups)}
        self.items = []
        for idx in length_batches(rows, batch_size):
            b = collate_rows(idx, [rows[i] for i in idx], tokenizer.pad_token_id, "left").to(device)
            self.items.append((b, torch.tensor([gidx[examples[i].group] for i in idx], device=device)))


def site_modules(model):
    """(site, layer, module) for every site module of the adapter (one module per site here: no fused model)."""
    adapter = get_adapter(model)
    return [(name, layer, module) for name, site in adapter.sites.items() for layer, module in enumerate(site.modules)]


def reduce_layers(per_module, mask, p, groups, out) -> None:
    """Our quantity from full [B, T, F] a x g tensors: p x max over real positions, summed per group."""
    for key, ag in per_module.items():
        best = ag.float().masked_fill(~mask[..., None], float("-inf")).amax(1) * p[:, None]
        out[key].index_add_(0, groups, best)


def captum_scores(model, batches: Batches) -> dict:
    from captum.attr import LayerGradientXActivation

    sites = site_modules(model)
    attr = LayerGradientXActivation(lambda *a: label_prob(model, *a), [m for _, _, m in sites])
    flags = [(q, q.requires_grad) for q in model.parameters()]
    out = {(s, layer): None for s, layer, _ in sites}
    try:
        for q, _ in flags:
            q.requires_grad_(False)
        for b, groups in batches.items:
            gold = b.score_tok[:, 0]
            args = (b.attention_mask.long(), b.position_ids, gold)
            with torch.no_grad():
                p = label_prob(model, b.input_ids, *args)
            layers = attr.attribute(b.input_ids, additional_forward_args=args)
            for (s, layer, _), ag in zip(sites, layers):
                if out[(s, layer)] is None:
                    out[(s, layer)] = torch.zeros(
                        len(batches.groups), ag.shape[-1], dtype=torch.float32, device=ag.device
                    )
            reduce_layers(
                {(s, layer): ag for (s, layer, _), ag in zip(sites, layers)}, b.attention_mask, p, groups, out
            )
            del layers
    finally:
        for q, flag in flags:
            q.requires_grad_(flag)
    return out


def forward_order(model, sites: list, batch) -> list:
    """``sites`` sorted by when their modules run in a forward pass (nnsight 0.8 serves values in that order)."""
    seen: list[int] = []
    handles = [m.register_forward_hook(lambda mod, i, o, k=k: seen.append(k)) for k, (_, _, m) in enumerate(sites)]
    try:
        with torch.no_grad():
            model(input_ids=batch.input_ids[:1], attention_mask=batch.attention_mask[:1].long(), logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
    first = {k: i for i, k in reversed(list(enumerate(seen)))}
    return [sites[k] for k in sorted(first, key=first.get)]


def nnsight_scores(model, batches: Batches) -> dict:
    import nnsight
    from nnsight import NNsight

    names = {id(m): n for n, m in model.named_modules()}
    sites = forward_order(model, site_modules(model), batches.items[0][0])
    wrapped = NNsight(model)
    out = {(s, layer): None for s, layer, _ in sites}
    for q in model.parameters():
        q.requires_grad_(False)
    for b, groups in batches.items:
        gold = b.score_tok[:, 0]
        with wrapped.trace(
            input_ids=b.input_ids,
            attention_mask=b.attention_mask.long(),
            position_ids=b.position_ids,
            logits_to_keep=1,
            use_cache=False,
        ):
            wrapped.model.embed_tokens.output.requires_grad_(True)
            acts, grads = nnsight.save([]), nnsight.save([])
            for _s, _layer, m in sites:  # forward order
                acts.append(wrapped.get(names[id(m)]).output)
            logits = wrapped.output.logits
            p = logits[:, -1].float().log_softmax(-1).gather(1, gold[:, None]).squeeze(1).exp()
            p_saved = p.save()
            with p.sum().backward():
                for a in reversed(acts):  # gradients arrive in reverse order
                    grads.append(a.grad)
        p = p_saved.detach()
        saved = {(s, layer): (a, g) for (s, layer, _), a, g in zip(sites, acts, reversed(grads))}
        for key, (a, _g) in saved.items():
            if out[key] is None:
                out[key] = torch.zeros(len(batches.groups), a.shape[-1], dtype=torch.float32, device=a.device)
        reduce_layers({k: a.detach() * g for k, (a, g) in saved.items()}, b.attention_mask, p, groups, out)
    return out


def compare(ours, peer: dict, name: str) -> None:
    """Relative error and top-1% overlap of ``peer``'s sums against our ScoreTable."""
    worst = 0.0
    flat_ours, flat_peer = [], []
    for (site, layer), t in peer.items():
        ref = ours.scores[site][layer].T.double()  # [groups, channels]
        got = t.double().cpu()
        worst = max(worst, ((got - ref).abs().max() / ref.abs().max()).item())
        flat_ours.append(ref)
        flat_peer.append(got)
    a, b = torch.cat(flat_ours, 1), torch.cat(flat_peer, 1)
    k = max(1, a.shape[1] // 100)
    same = [set(a[g].topk(k).indices.tolist()) == set(b[g].topk(k).indices.tolist()) for g in range(a.shape[0])]
    overlap = min(
        len(set(a[g].topk(k).indices.tolist()) & set(b[g].topk(k).indices.tolist())) / k for g in range(a.shape[0])
    )
    print(
        f"equality {name:9s}: max relative error {worst:.1e}; top-1% sets identical in {sum(same)}/{len(same)} groups "
        f"(worst overlap {overlap:.4f}, {k} of {a.shape[1]} neurons)"
    )


def timed(fn: Callable[[], object], device: str) -> dict:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    # nnsight's traces leave reference cycles that hold their saved tensors; collected in the middle of the
    # next method's run they would slow it down or hide its memory growth, so every run starts collected
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_issue_model_args(ap, examples=32)
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # a child that measures one method
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    timing_allocator()
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} threads, load average {load_average()}")
    model = issue_model(args.hidden, args.intermediate, args.layers).to(args.device)
    tokenizer = word_tokenizer(32000)
    examples = random_examples(args.examples, args.tokens, 32000)
    batches = Batches(tokenizer, examples, args.batch_size, args.device)
    engine = ScoringEngine(model, tokenizer, ScoringOptions(batch_size=args.batch_size, chat_template=False))
    print(
        f"{len(examples)} examples in {len(batches.items)} batches, "
        f"{sum(b.input_ids.shape[1] for b, _ in batches.items) / len(batches.items):.0f} "
        f"tokens per row on average; {len(site_modules(model))} site modules"
    )

    def forward_only():
        with torch.no_grad():
            for b, _ in batches.items:
                label_prob(model, b.input_ids, b.attention_mask.long(), b.position_ids, b.score_tok[:, 0])

    low_memory = ScoringEngine(
        model, tokenizer, ScoringOptions(batch_size=args.batch_size, chat_template=False, recompute=True)
    )
    every: dict[str, Callable[[], object]] = {
        "culture-neurons": lambda: engine.score(examples, progress=False),
        "ours, recompute": lambda: low_memory.score(examples, progress=False),
        "captum": lambda: captum_scores(model, batches),
        "nnsight": lambda: nnsight_scores(model, batches),
        "forward-only": forward_only,
    }
    if args.memory_of:
        child_peak(every[args.memory_of], args.device)
        return
    timed_names = ["culture-neurons", "ours, recompute"]  # the peers join once their equality check passes
    ours = engine.score(examples, progress=False)
    recomputed = low_memory.score(examples, progress=False)
    worst = max((ours.scores[s] - recomputed.scores[s]).abs().max().item() for s in ours.sites)
    print(f"equality recompute: max absolute difference {worst:.1e} against the default engine")
    for name, module, fn in (("captum", "captum", captum_scores), ("nnsight", "nnsight", nnsight_scores)):
        if importlib.util.find_spec(module) is None:
            print(f"({name} not installed: pip install {module}; its rows are skipped)")
            continue
        try:
            compare(ours, fn(model, batches), name)
        except Exception as exc:  # a peer's API change must not hide the other rows
            print(f"({name} failed: {type(exc).__name__}: {exc}; its rows are skipped)")
            continue
        timed_names.append(name)
    methods = {name: every[name] for name in [*timed_names, "forward-only"]}
    names = list(methods)
    results: dict[str, list[dict]] = {name: [] for name in methods}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order: no method always runs first
            results[name].append(timed(methods[name], args.device))
    med = {name: {k: statistics.median(x[k] for x in rs) for k in ("wall", "cpu")} for name, rs in results.items()}
    for name, peak in peaks_in_children(names, sys.argv).items():
        med[name]["peak"] = peak
    base, ours_m = med["forward-only"], med["culture-neurons"]
    print(
        f"\n{'method':16s} {'wall s':>8s} {'cpu s':>8s} {'peak MiB':>9s} {'vs fwd':>7s} {'ours/it wall':>13s} "
        f"{'ours/it cpu':>12s} {'its peak/ours':>14s}"
    )
    for name, m in med.items():
        # a peak under 1 MiB is below what RSS can resolve: no ratio rather than a meaningless one
        ratio = f"{m['peak'] / ours_m['peak']:13.2f}x" if ours_m["peak"] >= 2**20 else f"{'n/a':>14s}"
        print(
            f"{name:16s} {m['wall']:8.2f} {m['cpu']:8.2f} {m['peak'] / 2**20:9.1f} {m['wall'] / base['wall']:6.2f}x "
            f"{ours_m['wall'] / m['wall']:12.2f}x {ours_m['cpu'] / m['cpu']:11.2f}x {ratio}"
        )
    print(
        f"(times: medians of {args.repeats} interleaved repeats; peak = extra memory over the start of one run of "
        "each, after a warm-up run, in a fresh process of its own)"
    )
    if "captum" in med:
        for name in ("culture-neurons", "ours, recompute"):
            print(
                f"{name}: {med[name]['wall'] / med['captum']['wall']:.2f}x captum's time, "
                f"{med[name]['peak'] / med['captum']['peak']:.2f}x its peak extra memory"
            )


if __name__ == "__main__":
    main()
