"""The ``choice`` target before and after prompt sharing, and against ``label``, in one interleaved run.

    python benchmarks/bench_choice.py                      # the issue's random Llama, 16 four-option items, batch 8
    python benchmarks/bench_choice.py --examples 32 --repeats 5

"recomputed" is the original path (``ScoringEngine(..., share_prompt=False)``): every option row
runs the whole prompt. "shared" runs each prompt once and the options from its KV cache. The
scores of the two are compared first (max relative error over all sites), then timed in turns.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import (
    Peak,
    add_issue_model_args,
    fixed_mmap_threshold,
    issue_model,
    load_average,
    random_examples,
    word_tokenizer,
)

from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_issue_model_args(ap, examples=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fixed_mmap_threshold()
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load_average()}")
    model = issue_model(args.hidden, args.intermediate, args.layers)
    tokenizer = word_tokenizer(32000)
    examples = random_examples(args.examples, args.tokens, 32000)
    choice = ScoringOptions(batch_size=args.batch_size, chat_template=False, target="choice")
    engines = {
        "choice, shared": ScoringEngine(model, tokenizer, choice, share_prompt=True),
        "choice, recomputed": ScoringEngine(model, tokenizer, choice, share_prompt=False),
        "label": ScoringEngine(model, tokenizer, ScoringOptions(batch_size=args.batch_size, chat_template=False)),
    }
    a, b = (engines[k].score(examples, progress=False) for k in ("choice, shared", "choice, recomputed"))
    err = max(
        ((a.scores[s].double() - b.scores[s].double()).abs().max() / b.scores[s].double().abs().max()).item()
        for s in a.sites
    )
    perr = ((a.prob_sums - b.prob_sums).abs().max() / b.prob_sums.abs().max()).item()
    print(f"shared vs recomputed: max relative error {err:.1e} (scores), {perr:.1e} (p sums)")
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in engines}
    names = list(engines)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with Peak("cpu") as peak:
                wall, cpu = time.perf_counter(), time.process_time()
                engines[name].score(examples, progress=False)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            runs[name].append((wall, cpu, peak.peak))
    med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in runs.items()}
    ref = med["choice, recomputed"]
    print(
        f"\n{'method':20s} {'wall s':>8s} {'cpu s':>8s} {'ex/s':>7s} {'peak MiB':>9s} "
        f"{'speed-up vs recomputed (wall, cpu)':>36s}"
    )
    for name, (wall, cpu, peak) in med.items():
        print(
            f"{name:20s} {wall:8.2f} {cpu:8.2f} {len(examples) / wall:7.2f} {peak / 2**20:9.1f} "
            f"{ref[0] / wall:17.2f}x {ref[1] / cpu:10.2f}x"
        )
    print(f"(medians of {args.repeats} interleaved repeats, {len(examples)} four-option items)")


if __name__ == "__main__":
    main()
