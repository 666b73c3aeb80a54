"""Cost curves: scoring time and peak memory against examples, tokens, width and depth; selection
time against the number of neurons. Prints each series and its fitted exponent (least squares on
log-log), so "linear in examples and tokens" is a number, not a claim.

    python benchmarks/bench_scaling.py                   # small sizes: a few minutes on 2 cores
    python benchmarks/bench_scaling.py --large           # tokens up to 1024, width up to 1024, 16 layers,
                                                         # the 8B neuron count
    python benchmarks/bench_scaling.py --only tokens     # one series (examples, tokens, width, layers, selection)

Scoring runs on a random Llama (base: hidden 256, MLP 688, 4 layers, vocab 4000, batch 8, label
target); one axis varies at a time. Peak memory is the RSS growth of the scoring call (CUDA: max
allocated). Selection runs ``select_general`` and ``select_specific`` on synthetic tables with the
8B model's site widths (gate/up 14336, q 4096, k/v 1024 per layer) and 1..32 layers.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import (
    Peak,
    issue_model,
    load_average,
    memory_allocator,
    random_examples,
    timing_allocator,
    word_tokenizer,
)

from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions

BASE = {"examples": 16, "tokens": 64, "hidden": 256, "layers": 4}
SERIES = {
    "examples": ([8, 16, 32, 64], [16, 32, 64, 128]),
    "tokens": ([64, 128, 256], [64, 128, 256, 512, 1024]),
    "width": ([128, 256, 512], [128, 256, 512, 1024]),
    "layers": ([2, 4, 8], [2, 4, 8, 16]),
}
LLAMA_8B = {"mlp.gate": 14336, "mlp.up": 14336, "attn.q": 4096, "attn.k": 1024, "attn.v": 1024}


def exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of log y against log x (least squares): 1 is linear, 2 quadratic."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-12)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def score_once(size: dict, device: str, repeats: int) -> tuple[float, float]:
    """Median seconds and peak bytes of scoring one configuration (after a warm-up batch)."""
    hidden = size["hidden"]
    heads = max(4, hidden // 64)
    model = issue_model(
        hidden, int(hidden * 2.6875) // 8 * 8, size["layers"], heads, max(1, heads // 4), vocab=4000
    ).to(device)
    tokenizer = word_tokenizer(4000)
    examples = random_examples(size["examples"], size["tokens"], 4000)
    engine = ScoringEngine(model, tokenizer, ScoringOptions(batch_size=8, chat_template=False))
    engine.score(examples[:8], progress=False)
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        engine.score(examples, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    gc.collect()  # the peak from a collected heap, in one more run (the memory allocator slows large allocations)
    with memory_allocator(), Peak(device) as peak:
        engine.score(examples, progress=False)
    return statistics.median(times), peak.peak


def scoring_series(axis: str, values: list[int], device: str, repeats: int) -> None:
    key = "hidden" if axis == "width" else axis
    seconds, peaks = [], []
    print(f"\n== scoring vs {axis} (others: {BASE})")
    for v in values:
        s, p = score_once({**BASE, key: v}, device, repeats)
        seconds.append(s)
        peaks.append(p)
        print(f"{axis:9s} {v:6d}: {s:8.3f} s   peak +{p / 2**20:8.1f} MiB")
    positive = [(v, p) for v, p in zip(values, peaks) if p > 0]
    mem = f"{exponent(*zip(*positive)):.2f}" if len(positive) >= 2 else "n/a"
    print(f"fitted exponent: time ~ {axis}^{exponent(values, seconds):.2f}, peak memory ~ {axis}^{mem}")


def selection_series(layer_counts: list[int], groups: int = 8) -> None:
    from culture_neurons import ScoreTable
    from culture_neurons.selection import select_general, select_specific

    names = [f"country{i}" for i in range(groups)]
    neurons, general, specific = [], [], []
    print(f"\n== selection vs neurons (8B site widths, {groups} groups; 32 layers is the 8B shape)")
    for layers in layer_counts:
        gen = torch.Generator().manual_seed(layers)
        meta = {"model": {"name_or_path": "synthetic", "config_sha256": "synthetic"}, "options": {}}
        counts = torch.full((groups,), 100, dtype=torch.int64)

        def table(control: bool, gen=gen, layers=layers, meta=meta, counts=counts) -> ScoreTable:
            scores = {s: torch.randn(layers, w, groups, generator=gen) for s, w in LLAMA_8B.items()}
            if control:
                scores = {s: t.clamp_(min=0) for s, t in scores.items()}
            return ScoreTable(
                scores,
                counts,
                torch.zeros(groups, dtype=torch.float64),
                names,
                {**meta, "options": {"control": control}},
            )

        d, c, crc = table(False), table(True), table(False)
        start = time.perf_counter()
        select_general([d], [c], crc)
        general.append(time.perf_counter() - start)
        start = time.perf_counter()
        select_specific([d], [c], crc, names[0])
        specific.append(time.perf_counter() - start)
        n = layers * sum(LLAMA_8B.values())
        neurons.append(n)
        print(f"{n:11,d} neurons ({layers:2d} layers): general {general[-1]:7.3f} s   specific {specific[-1]:7.3f} s")
        del d, c, crc
    print(
        f"fitted exponent: general ~ neurons^{exponent(neurons, general):.2f}, "
        f"specific ~ neurons^{exponent(neurons, specific):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--large", action="store_true", help="Larger sizes (tokens to 1024, 16 layers, the full 8B neuron count)."
    )
    ap.add_argument(
        "--only", choices=[*SERIES, "selection"], action="append", help="Run only these series (repeatable)."
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    timing_allocator()
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} threads, load average {load_average()}")
    chosen = args.only or [*SERIES, "selection"]
    for axis, (small, large) in SERIES.items():
        if axis in chosen:
            scoring_series(axis, large if args.large else small, args.device, args.repeats)
    if "selection" in chosen:
        selection_series([1, 2, 4, 8, 16, 32] if args.large else [1, 2, 4, 8])


if __name__ == "__main__":
    main()
