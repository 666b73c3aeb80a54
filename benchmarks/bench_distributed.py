"""Data-parallel scoring throughput: examples per second with 1 and 2 processes on the same data.

    python benchmarks/bench_distributed.py [--examples 64] [--procs 1 2]

Each run splits the machine's cores evenly between its processes (gloo on CPU), so the numbers show
the overhead of sharding and all-reduce rather than extra hardware. On a multi-GPU node, launch
`torchrun --nproc-per-node N -m culture_neurons score ...` instead and compare its log lines.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank: int, world_size: int, args: argparse.Namespace, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    from bench_scoring import random_examples, word_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    tokenizer = word_tokenizer(args.vocab)
    examples = random_examples(args.examples, args.tokens, args.vocab)
    engine = ScoringEngine(model, tokenizer, ScoringOptions(batch_size=args.batch_size, chat_template=False))
    engine.score(examples[: 2 * world_size], progress=False)  # warm-up
    dist.barrier()
    start = time.perf_counter()
    table = engine.score(examples, progress=False)
    dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == 0:
        results[world_size] = (elapsed, table.num_examples)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    manager = mp.Manager()
    results = manager.dict()
    for i, n in enumerate(args.procs):
        mp.spawn(worker, args=(n, args, 29600 + i, results), nprocs=n, join=True)
    print(
        f"random Llama {args.hidden} wide, {args.layers} layers; {args.examples} examples of ~{args.tokens} tokens; "
        f"{os.cpu_count()} cores"
    )
    base = None
    for n in args.procs:
        elapsed, count = results[n]
        rate = count / elapsed
        base = base or rate
        print(f"{n} process(es): {elapsed:6.2f} s, {rate:6.2f} examples/s ({rate / base:.2f}x the first)")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
