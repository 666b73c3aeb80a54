"""Where scoring spends its time: torch.profiler over ``ScoringEngine.score`` on the issue's setup.

    python benchmarks/profile_scoring.py                      # random Llama 1024x2816x8, 32 examples, batch 8
    python benchmarks/profile_scoring.py --target choice --top 40 --out profile.txt

Prints the profiler's top operators by self CPU time (and the forward-only time on the same
batches for scale), so per-hook small ops, dtype casts and the backward's share can be read off.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import issue_model, random_examples, word_tokenizer

from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=89)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--target", default="label", choices=["label", "answer", "choice"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", help="Also write the table to this file.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = issue_model()
    tokenizer = word_tokenizer(32000)
    examples = random_examples(args.examples, args.tokens, 32000)
    engine = ScoringEngine(
        model, tokenizer, ScoringOptions(batch_size=args.batch_size, chat_template=False, target=args.target)
    )
    engine.score(examples[: args.batch_size], progress=False)  # warm-up
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        engine.score(examples, progress=False)
    wall = time.perf_counter() - start
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48)
    text = (
        f"torch {torch.__version__}, {args.threads} threads, target {args.target}, {args.examples} examples, "
        f"batch {args.batch_size}\n"
    )
    text += f"scoring wall time under the profiler: {wall:.2f} s\n{table}"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
