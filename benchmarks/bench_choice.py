"""The ``choice`` target before and after prompt sharing, and against ``label``, in one interleaved run.

    python benchmarks/bench_choice.py                      # the issue's random Llama, 16 four-option items, batch 8
    python benchmarks/bench_choice.py --examples 32 --repeats 5

"recomputed" is the original path (``ScoringEngine(..., share_prompt=False)``): every option row
runs the whole prompt. "shared, packed" (the default) runs each prompt and its options as one
sequence under a custom attention mask; "shared, cache" runs each prompt once and the options from
its KV cache. The scores of each are compared with "recomputed" first (max relative error over all
sites), then all are timed in turns; the peak extra memory of each is measured in a fresh process of
its own (see bench_peers.py).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_issue_model_args(ap, examples=16)
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # a child that measures one method
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    timing_allocator()
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load_average()}")
    model = issue_model(args.hidden, args.intermediate, args.layers)
    tokenizer = word_tokenizer(32000)
    examples = random_examples(args.examples, args.tokens, 32000)
    choice = ScoringOptions(batch_size=args.batch_size, chat_template=False, target="choice")
    engines = {
        "choice, packed": ScoringEngine(model, tokenizer, choice, share_prompt=True),
        "choice, cache": ScoringEngine(model, tokenizer, choice, share_prompt="cache"),
        "choice, recomputed": ScoringEngine(model, tokenizer, choice, share_prompt=False),
        "label": ScoringEngine(model, tokenizer, ScoringOptions(batch_size=args.batch_size, chat_template=False)),
    }
    if args.memory_of:
        child_peak(lambda: engines[args.memory_of].score(examples, progress=False), "cpu")
        return
    b = engines["choice, recomputed"].score(examples, progress=False)
    for name in ("choice, packed", "choice, cache"):
        a = engines[name].score(examples, progress=False)
        err = max(
            ((a.scores[s].double() - b.scores[s].double()).abs().max() / b.scores[s].double().abs().max()).item()
            for s in a.sites
        )
        perr = ((a.prob_sums - b.prob_sums).abs().max() / b.prob_sums.abs().max()).item()
        print(f"{name} vs recomputed: max relative error {err:.1e} (scores), {perr:.1e} (p sums)")
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in engines}
    names = list(engines)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            engines[name].score(examples, progress=False)
            runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    med = {k: [statistics.median(x[i] for x in v) for i in range(2)] for k, v in runs.items()}
    for name, peak in peaks_in_children(names, sys.argv).items():  # each in a fresh process
        med[name].append(peak)
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
