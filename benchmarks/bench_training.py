"""Selective vs full fine-tuning of SmolLM2-135M-Instruct on CPU: time per optimizer step and memory.

    python benchmarks/bench_training.py                  # top (10% budget) and full, 4 timed steps each
    python benchmarks/bench_training.py --steps 2 --modes top

Each mode runs in a fresh worker process (so peak RSS is its own) on ``--threads`` CPU threads:
load the model in float32, rank its modules by a synthetic culture-general set (a seeded uniform
draw of 1% of ``mlp.gate`` and 0.2% of ``attn.q/k/v``, the sizes ``select_general`` picks by
default), and train with :func:`culture_neurons.training.finetune` on ``demo-nlu`` with the paper's
settings (effective batch 16 = 4 micro-batches of 4, AdamW, lr 3e-5, constant). One warm-up step,
then ``--steps`` timed optimizer steps. Reported per mode: trained parameters, the wall seconds per
optimizer step (minimum and median: on shared cores the minimum is the least disturbed) and the
process CPU seconds per step (robust to other jobs on the machine), the worker's RSS right after loading the
model, its peak RSS at the end of the last
step and after writing the model folder, and the bytes of the AdamW state and of the gradients.

Which layers the top set holds matters for speed as well as memory: backward stops at the earliest
trained module, so a set in late layers skips most of the backward pass.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(mode: str, steps: int, threads: int, budget: float) -> None:
    torch.set_num_threads(threads)
    from transformers import TrainerCallback

    from culture_neurons.models.adapters import get_adapter
    from culture_neurons.models.loading import load_model
    from culture_neurons.selection.neuronset import NeuronSet
    from culture_neurons.training import TrainConfig, choose_modules, finetune, rank_modules, training_examples

    model, tokenizer = load_model("smollm2-135m-instruct", dtype="float32", device="cpu")
    rss_loaded = _rss_mib()
    adapter = get_adapter(model)
    gen = torch.Generator().manual_seed(0)
    sites, layers, indices = [], [], []
    for site, frac in (("mlp.gate", 0.01), ("attn.q", 0.002), ("attn.k", 0.002), ("attn.v", 0.002)):
        total = adapter.num_layers * adapter.sites[site].width
        flat = torch.randperm(total, generator=gen)[: int(frac * total)]
        sites += [site] * flat.numel()
        layers += (flat // adapter.sites[site].width).tolist()
        indices += (flat % adapter.sites[site].width).tolist()
    general = NeuronSet.from_columns(
        sites, layers, indices, kind="general", num_layers=adapter.num_layers, widths=adapter.widths
    )
    chosen = choose_modules(rank_modules(model, general), mode, budget)
    stats: dict = {"step_s": [], "cpu_s": []}

    class Probe(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            stats["t0"], stats["c0"] = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, optimizer=None, model=None, **kw):
            stats["step_s"].append(time.perf_counter() - stats["t0"])
            stats["cpu_s"].append(time.process_time() - stats["c0"])
            if state.global_step == args.max_steps:
                inner = getattr(optimizer, "optimizer", optimizer)
                stats["optimizer_state_mib"] = (
                    sum(
                        t.numel() * t.element_size()
                        for s in inner.state.values()
                        for t in s.values()
                        if torch.is_tensor(t)
                    )
                    / 2**20
                )
                stats["grad_mib"] = (
                    sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / 2**20
                )
                stats["peak_train_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    examples = training_examples("demo-nlu", max_examples=None)
    config = TrainConfig(max_steps=steps + 1, save_steps=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        result = finetune(
            model, tokenizer, examples, chosen, Path(tmp) / "out", config, callbacks=[Probe()], progress=False
        )
    timed, cpu = sorted(stats["step_s"][1:]), stats["cpu_s"][1:]
    print(
        json.dumps(
            {
                "mode": mode,
                "modules": "all" if chosen.full else list(chosen.names),
                "trained_params": result.trainable_params,
                "trained_pct": 100 * chosen.fraction,
                "earliest_layer": 0 if chosen.full else min(m.layer for m in chosen.modules),
                "steps_timed": len(timed),
                "s_per_step_median": timed[len(timed) // 2],
                "s_per_step_min": timed[0],
                "cpu_s_per_step": sum(cpu) / len(cpu),
                "rss_after_load_mib": rss_loaded,
                "peak_rss_training_mib": stats["peak_train_mib"],
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "optimizer_state_mib": stats["optimizer_state_mib"],
                "grad_mib": stats["grad_mib"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="top,full", help="comma-separated: top, bottom, random, full")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.threads, args.budget)
        return
    rows = []
    for mode in args.modes.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
            "--budget",
            str(args.budget),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(
        "| mode | trained params | earliest layer | s / step, min (median) | CPU s / step | AdamW state | grads | "
        "RSS after load | "
        "peak RSS training | peak RSS incl. save |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['trained_params'] / 1e6:.1f} M ({r['trained_pct']:.1f}%) | {r['earliest_layer']} | "
            f"{r['s_per_step_min']:.2f} ({r['s_per_step_median']:.2f}) | "
            f"{r['cpu_s_per_step']:.1f} | "
            f"{r['optimizer_state_mib']:.0f} MiB | {r['grad_mib']:.0f} MiB | {r['rss_after_load_mib']:.0f} MiB | "
            f"{r['peak_rss_training_mib']:.0f} MiB | "
            f"{r['peak_rss_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
