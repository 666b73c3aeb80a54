"""Evaluation against lm-evaluation-harness, side by side: equality first, then time, memory and FLOP/s.

On one exported task (the same items for every tool) and one model, this script

1. checks that our ``loglik`` scorer and lm-eval's ``hf`` model give the same per-option
   log-likelihoods (summed over the continuation's tokens) and the same ``acc``/``acc_norm``;
2. times the evaluation loop alone, in this process, interleaved over ``--repeats`` rounds:
   ours (``culture-neurons evaluate``'s code path), lm-eval's ``HFLM`` (``--model hf``) and our
   lm-eval model (``--model culture-neurons``, lm-eval's loop with our hooks, none active), all on
   the same weights;
3. reports the achieved model FLOP/s, ``2 × non-embedding parameters × tokens the decoder
   processed + 2 × hidden × vocabulary × logit rows computed``, as a fraction of a GEMM
   microbenchmark run in the same process, dtype and thread count;
4. with ``--conditions N``: an ablation of N conditions (the original, a set, N - 2 random sets)
   evaluated together in one pass against one condition after another (``batch_conditions``);
5. with ``--whole-process``: each tool as its own command (``culture-neurons evaluate``,
   ``lm_eval --model hf``, ``culture-neurons-lm-eval --model culture-neurons``), interleaved, with
   wall time and peak resident memory.

Examples::

    python benchmarks/bench_evaluation.py --data-dir ../shared/data --task blend --items 128
    python benchmarks/bench_evaluation.py --data-dir ../shared/data --task blend --items 64 --conditions 22
    python benchmarks/bench_evaluation.py --random-llama --task blend --dtype bfloat16 --whole-process

Nothing here is asserted: the script prints what it measured, and ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's bars would drown the table (read when tqdm is imported)

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from culture_neurons.data.example import read_examples  # noqa: E402
from culture_neurons.evaluation.experiments import evaluate_conditions  # noqa: E402
from culture_neurons.evaluation.plan import ablation as plan_ablation  # noqa: E402
from culture_neurons.evaluation.scorers import EvalOptions, evaluate_examples  # noqa: E402
from culture_neurons.likelihood import option_loglik_batches, option_rows, prompt_texts  # noqa: E402
from culture_neurons.models.adapters import get_adapter  # noqa: E402
from culture_neurons.models.loading import load_model, resolve_source  # noqa: E402
from culture_neurons.selection.neuronset import NeuronSet  # noqa: E402
from culture_neurons.selection.randomsets import select_random  # noqa: E402

SMOLLM2 = "smollm2-135m-instruct"
# A Llama about 2.6x SmolLM2's non-embedding size, with SmolLM2's tokenizer (random weights).
LARGER = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=16, num_attention_heads=16,
              num_key_value_heads=4, max_position_embeddings=2048)  # fmt: skip


# -- setup ----------------------------------------------------------------------------------------


def cli(*args: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=env)


def export_task(work: Path, task: str, data_dir: str | None, items: int, split: str) -> tuple[Path, Path, str]:
    """Our examples JSONL and the lm-eval task folder for the same items; returns (examples, folder, task name)."""
    common = [task, "--split", split, "--limit", items]
    if data_dir:
        common += ["--data-dir", data_dir]
    if task in ("blend", "culturalbench-easy"):
        common += ["--countries", "targets"]
    stem = f"{task}-{split}-{items}"
    examples, folder = work / f"{stem}.jsonl", work / f"task-{stem}"
    cn = [sys.executable, "-m", "culture_neurons"]
    if not examples.exists():
        cli(*cn, "data", "export", *common, "--templates", "cloze", "--out", examples)
    name = f"bench_{task.replace('-', '_')}_{items}"
    if not folder.exists():
        cli(*cn, "data", "export-lm-eval", *common, "--task", name, "--out", folder)
    return examples, folder, name


def random_llama(work: Path, dtype: torch.dtype) -> Path:
    """A random Llama of the LARGER shape with SmolLM2's tokenizer, saved once as a Hugging Face folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = work / "random-llama"
    if not (folder / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(resolve_source(SMOLLM2)[0])
        config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, **LARGER)
        torch.manual_seed(0)
        LlamaForCausalLM(config).to(torch.float32).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


# -- counting work ----------------------------------------------------------------------------------


def non_embedding_params(model: Any) -> int:
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight if model.get_output_embeddings() is not None else None
    skip = {id(emb)} | ({id(head)} if head is not None else set())
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


class Work:
    """Counts the tokens the decoder processed and the logit rows computed, through two hooks."""

    def __init__(self, model: Any) -> None:
        self.model, self.tokens, self.logit_rows = model, 0, 0
        self.layer = model.get_submodule(get_adapter(model).layers_path)[0]
        self.head = model.get_output_embeddings()

    def __enter__(self) -> Work:
        def count_tokens(_m, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            self.tokens += hidden.shape[0] * hidden.shape[1]

        def count_rows(_m, args):
            self.logit_rows += args[0].numel() // args[0].shape[-1]

        self.handles = [
            self.layer.register_forward_pre_hook(count_tokens, with_kwargs=True),
            self.head.register_forward_pre_hook(count_rows),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()

    def flops(self, params: int) -> float:
        hidden, vocab = self.head.weight.shape[1], self.head.weight.shape[0]
        return 2.0 * params * self.tokens + 2.0 * hidden * vocab * self.logit_rows


def gemm_flops(dtype: torch.dtype, repeats: int = 30) -> float:
    """FLOP/s of the issue's reference GEMM ``[512x576]·[576x1536]`` in ``dtype`` (best of ``repeats``)."""
    a, b = torch.randn(512, 576).to(dtype), torch.randn(576, 1536).to(dtype)
    for _ in range(5):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * 512 * 576 * 1536 / best


# -- the three loops ----------------------------------------------------------------------------------


def ours(model, tokenizer, examples, batch_size):
    return evaluate_examples(model, tokenizer, examples, EvalOptions("loglik", batch_size, chat_template=False))


def lm_eval_run(lm, task: str, folder: Path, samples: bool = False) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    return lm_eval.simple_evaluate(
        model=lm, tasks=[task], task_manager=manager, log_samples=samples, verbosity="ERROR", bootstrap_iters=0
    )


def our_sums(model, tokenizer, examples, batch_size) -> list[list[float]]:
    prompts, add_special = prompt_texts(tokenizer, examples, False)
    rows = option_rows(tokenizer, examples, prompts, add_special)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = [[] for _ in examples]
    for _, batch_rows, sums, _ in option_loglik_batches(model, rows, batch_size, pad):
        for row, value in zip(batch_rows, sums.tolist()):
            out[row.example].append(value)
    return out


def equality(model, tokenizer, examples, lm, task, folder, batch_size) -> dict[str, Any]:
    mine = our_sums(model, tokenizer, examples, batch_size)
    rows = ours(model, tokenizer, examples, batch_size)
    res = lm_eval_run(lm, task, folder, samples=True)
    theirs = {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in res["samples"][task]}
    diff = max(abs(a - b) for i, opts in enumerate(mine) for a, b in zip(opts, theirs[i]))
    acc = statistics.fmean(float(r["correct"]) for r in rows)
    acc_norm = statistics.fmean(float(r["correct_norm"]) for r in rows)
    their = res["results"][task]
    return {
        "max_abs_loglik_diff": diff,
        "acc": (acc, their["acc,none"]),
        "acc_norm": (acc_norm, their["acc_norm,none"]),
    }


def timed(fn, work: Work | None = None) -> float:
    t = time.perf_counter()
    if work is None:
        fn()
    else:
        with work:
            fn()
    return time.perf_counter() - t


def loop_times(model, tokenizer, examples, task, folder, args, params, peak) -> dict[str, Any]:
    from lm_eval.models.huggingface import HFLM

    from culture_neurons.integrations.lm_eval_model import CultureNeuronsLM

    hf = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
    cn = CultureNeuronsLM(model, tokenizer, batch_size=args.batch_size)
    runs = {
        "ours": lambda: ours(model, tokenizer, examples, args.batch_size),
        "lm-eval hf": lambda: lm_eval_run(hf, task, folder),
        "lm-eval culture-neurons": lambda: lm_eval_run(cn, task, folder),
    }
    eq = equality(model, tokenizer, examples, hf, task, folder, args.batch_size)
    times: dict[str, list[float]] = {k: [] for k in runs}
    flops: dict[str, float] = {}
    for name, fn in runs.items():  # warm-up, and the work each loop does
        work = Work(model)
        timed(fn, work)
        flops[name] = work.flops(params)
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    out = {}
    for name in runs:
        best = min(times[name])
        out[name] = {
            "seconds": times[name],
            "best": best,
            "flops_per_s": flops[name] / best,
            "fraction_of_gemm": flops[name] / best / peak,
        }
    out["ratio hf/ours"] = out["lm-eval hf"]["best"] / out["ours"]["best"]
    out["ratio culture-neurons/ours"] = out["lm-eval culture-neurons"]["best"] / out["ours"]["best"]
    return {"equality": eq, "loops": out}


def condition_times(model, tokenizer, examples, args) -> dict[str, Any]:
    adapter = get_adapter(model)
    layers, width = adapter.num_layers, adapter.widths["mlp.gate"]
    gen = torch.Generator().manual_seed(0)
    flat = torch.randperm(layers * width, generator=gen)[: args.set_size]
    like = NeuronSet.from_columns(
        ["mlp.gate"] * len(flat), flat // width, flat % width, kind="general", num_layers=layers,
        widths=dict(adapter.widths),
    )  # fmt: skip
    randoms = [select_random(like, s) for s in range(args.conditions - 2)]
    conditions, _ = plan_ablation(("general", like), [(r.kind, r) for r in randoms], ["b"], "suppress")
    benches = {"b": examples}

    def run(batched: bool):
        opts = EvalOptions("loglik", args.batch_size, chat_template=False, batch_conditions=batched)
        return evaluate_conditions(model, tokenizer, benches, conditions, 2.0, opts)

    together, alone = run(True), run(False)
    diff = max(max(abs(a - b) for a, b in zip(x, y)) for x, y in zip(together["option_probs"], alone["option_probs"]))
    same = bool((together["correct"] == alone["correct"]).all())
    times: dict[str, list[float]] = {"together": [], "one at a time": []}
    for _ in range(args.repeats):
        times["together"].append(timed(lambda: run(True)))
        times["one at a time"].append(timed(lambda: run(False)))
    best = {k: min(v) for k, v in times.items()}
    return {
        "conditions": len(conditions),
        "items": len(examples),
        "max_abs_prob_diff": diff,
        "same_correct": same,
        "seconds": times,
        "ratio one-at-a-time/together": best["one at a time"] / best["together"],
        "ms per item and condition (together)": 1000 * best["together"] / (len(examples) * len(conditions)),
    }


# -- whole processes ----------------------------------------------------------------------------------


def whole_process(model_arg: str, examples: Path, task: str, folder: Path, args) -> dict[str, Any]:
    """Each tool as its own command, interleaved; wall time and peak RSS (``wait4``)."""
    hf_folder = resolve_source(model_arg)[0]
    dtype = args.dtype
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "culture-neurons evaluate": [
                sys.executable, "-m", "culture_neurons", "evaluate", "-m", model_arg, "-b", str(examples),
                "--scorer", "loglik", "--no-chat-template", "--batch-size", str(args.batch_size), "--dtype", dtype,
                "--device", "cpu", "--n-boot", "10", "-q", "-o", f"{tmp}/ours",
            ],
            "lm_eval --model hf": [
                sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                f"pretrained={hf_folder},dtype={dtype}", "--include_path", str(folder), "--tasks", task,
                "--batch_size", str(args.batch_size), "--device", "cpu",
            ],
            "culture-neurons-lm-eval": [
                sys.executable, "-m", "culture_neurons.integrations.lm_eval_cli", "--model", "culture-neurons",
                "--model_args", f"pretrained={model_arg},dtype={dtype}", "--include_path", str(folder), "--tasks",
                task, "--batch_size", str(args.batch_size), "--device", "cpu",
            ],
        }  # fmt: skip
        out: dict[str, Any] = {k: {"seconds": [], "peak_rss_mib": []} for k in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                t = time.perf_counter()
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=False)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed: {proc.stderr.read().decode()[-1500:]}")
                out[name]["seconds"].append(time.perf_counter() - t)
                out[name]["peak_rss_mib"].append(usage.ru_maxrss / 1024)
    base = min(out["culture-neurons evaluate"]["seconds"])
    for name in commands:
        out[name]["ratio to ours"] = min(out[name]["seconds"]) / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--random-llama", action="store_true", help=f"a random Llama of shape {LARGER} instead")
    parser.add_argument("--task", default="blend", help="a benchmark name (blend, commonsenseqa, piqa, ...)")
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--conditions", type=int, default=0, help="also time an ablation of N conditions")
    parser.add_argument("--set-size", type=int, default=345, help="neurons per set in the ablation")
    parser.add_argument("--condition-items", type=int, default=64, help="items of the ablation timing")
    parser.add_argument("--skip-loops", action="store_true", help="skip the lm-eval loop comparison")
    parser.add_argument("--whole-process", action="store_true")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-evaluation"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    examples_path, folder, task = export_task(work, args.task, args.data_dir, args.items, args.split)
    model_arg = str(random_llama(work, torch.float32)) if args.random_llama else args.model
    model, tokenizer = load_model(model_arg, dtype=args.dtype, device="cpu", progress=False)
    examples = read_examples(examples_path)
    dtype = getattr(torch, args.dtype)
    peak = gemm_flops(dtype)
    params = non_embedding_params(model)
    report: dict[str, Any] = {
        "model": model_arg, "task": args.task, "items": len(examples), "dtype": args.dtype,
        "batch_size": args.batch_size, "threads": args.threads, "non_embedding_params": params,
        "gemm_flops_per_s": peak, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "load_average": os.getloadavg(),
    }  # fmt: skip
    print(f"{model_arg} on {len(examples)} {args.task} items, {args.dtype}, batch {args.batch_size}, "
          f"{args.threads} threads; GEMM {peak / 1e9:.0f} GFLOP/s; {params / 1e6:.1f} M non-embedding "
          "parameters")  # fmt: skip
    if not args.skip_loops:
        report.update(loop_times(model, tokenizer, examples, task, folder, args, params, peak))
        eq = report["equality"]
        print(f"equality: max |loglik ours - lm-eval| {eq['max_abs_loglik_diff']:.2e}; "
              f"acc {eq['acc'][0]:.4f} vs {eq['acc'][1]:.4f}; "
              f"acc_norm {eq['acc_norm'][0]:.4f} vs {eq['acc_norm'][1]:.4f}")  # fmt: skip
        for name, r in report["loops"].items():
            if isinstance(r, dict):
                runs = [round(s, 2) for s in r["seconds"]]
                print(f"  {name:26s} best {r['best']:7.2f} s  {r['flops_per_s'] / 1e9:6.1f} GFLOP/s "
                      f"({100 * r['fraction_of_gemm']:.0f} % of GEMM)  runs {runs}")  # fmt: skip
        print(
            f"  lm-eval hf / ours {report['loops']['ratio hf/ours']:.2f}x; "
            f"lm-eval culture-neurons / ours {report['loops']['ratio culture-neurons/ours']:.2f}x"
        )
    if args.conditions:
        report["conditions"] = cond = condition_times(model, tokenizer, examples[: args.condition_items], args)
        print(f"{cond['conditions']} conditions on {cond['items']} items: one at a time / together "
              f"{cond['ratio one-at-a-time/together']:.2f}x ({cond['ms per item and condition (together)']:.1f} ms "
              f"per item and condition); max |prob diff| {cond['max_abs_prob_diff']:.1e}, same correct "
              f"{cond['same_correct']}; runs {cond['seconds']}")  # fmt: skip
    if args.whole_process:
        del model
        report["whole_process"] = wp = whole_process(model_arg, examples_path, task, folder, args)
        for name, r in wp.items():
            print(f"  {name:26s} {min(r['seconds']):7.2f} s  peak {max(r['peak_rss_mib']):6.0f} MiB  "
                  f"{r['ratio to ours']:.2f}x ours")  # fmt: skip
    report["max_rss_mib_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
