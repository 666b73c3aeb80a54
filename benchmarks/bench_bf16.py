"""What bfloat16 buys and what it changes, for evaluation and for scoring, against float32 on the same items.

Evaluation (``loglik`` scorer, every held-out BLEnD cloze item of the 8 target countries and, with
``--nlu``, CommonsenseQA's validation questions): time per dtype, interleaved; the per-item
prediction agreement; and the accuracy difference bfloat16 − float32 with a paired bootstrap CI.

Scoring (``choice`` target, ``--score-items`` identification questions per country, their control
items and CountryRC): time per dtype; Spearman between the two dtypes' scores per site; and the
Jaccard of the general set and of each country's specific set selected from each.

    python benchmarks/bench_bf16.py --data-dir ../shared/data --model smollm2-135m-instruct
    python benchmarks/bench_bf16.py --data-dir ../shared/data --model gemma-3-270m --json gemma.json

Nothing is asserted; the script prints the agreement table and ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from culture_neurons.attribution.engine import ScoringOptions, score_examples  # noqa: E402
from culture_neurons.data.example import read_examples  # noqa: E402
from culture_neurons.evaluation.scorers import EvalOptions, evaluate_examples  # noqa: E402
from culture_neurons.models.loading import load_model  # noqa: E402
from culture_neurons.selection import select_general, select_specific_many  # noqa: E402

DTYPES = ("float32", "bfloat16")


def export(work: Path, data_dir: str, name: str, bench: str, *extra: Any) -> Path:
    out = work / f"{name}.jsonl"
    if not out.exists():
        cmd = [sys.executable, "-m", "culture_neurons", "data", "export", bench]
        cmd += ["--data-dir", data_dir] if bench != "countryrc" else []  # CountryRC is built in
        subprocess.run([*cmd, "--templates", "cloze", *map(str, extra), "--out", str(out)], check=True)
    return out


def paired_ci(diff: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def jaccard(a, b) -> float:
    x, y = set(a.keys()), set(b.keys())
    return len(x & y) / max(len(x | y), 1)


def evaluation(models, examples, batch_size, repeats) -> dict[str, Any]:
    opts = EvalOptions("loglik", batch_size, chat_template=False)
    rows, times = {}, {d: [] for d in DTYPES}
    for _ in range(repeats):
        for d in DTYPES:
            t = time.perf_counter()
            rows[d] = evaluate_examples(*models[d], examples, opts)
            times[d].append(time.perf_counter() - t)
    f32, bf16 = (np.array([r["correct"] for r in rows[d]], dtype=float) for d in DTYPES)
    same = np.mean([a["prediction"] == b["prediction"] for a, b in zip(rows["float32"], rows["bfloat16"])])
    value, lo, hi = paired_ci(100 * (bf16 - f32))
    return {
        "items": len(examples),
        "accuracy": {d: float(100 * a.mean()) for d, a in zip(DTYPES, (f32, bf16))},
        "prediction_agreement": float(same),
        "accuracy_difference": {"value": value, "ci": [lo, hi]},
        "seconds": times,
        "speedup": min(times["float32"]) / min(times["bfloat16"]),
    }


def scoring(models, sets, batch_size) -> dict[str, Any]:
    tables: dict[str, dict[str, Any]] = {d: {} for d in DTYPES}
    times: dict[str, float] = {d: 0.0 for d in DTYPES}
    for role, examples in sets.items():
        for d in DTYPES:
            opts = ScoringOptions(batch_size=batch_size, chat_template=False, target="choice")
            t = time.perf_counter()
            tables[d][role] = score_examples(*models[d], examples, opts, progress=False, control=role == "control")
            times[d] += time.perf_counter() - t
    spearman = {}
    for site in tables["float32"]["score"].sites:
        a = tables["float32"]["score"].scores[site].double().flatten().numpy()
        b = tables["bfloat16"]["score"].scores[site].double().flatten().numpy()
        spearman[site] = float(spearmanr(a, b).statistic)
    general = {
        d: select_general([t["score"]], [t["control"]], t["countryrc"]) for d, t in tables.items()
    }  # fmt: skip
    specific = {
        d: select_specific_many([t["score"]], [t["control"]], t["countryrc"]) for d, t in tables.items()
    }  # fmt: skip
    keyset = {
        d: {n: {(s.site, s.layer, s.index): 1 for s in ns.neurons} for n, ns in specific[d].items()} for d in DTYPES
    }
    gen_keys = {d: {(s.site, s.layer, s.index): 1 for s in general[d].neurons} for d in DTYPES}
    return {
        "seconds": times,
        "speedup": times["float32"] / times["bfloat16"],
        "spearman": spearman,
        "general_sizes": {d: len(general[d]) for d in DTYPES},
        "general_jaccard": jaccard(gen_keys["float32"], gen_keys["bfloat16"]),
        "specific_jaccard": {
            c: jaccard(keyset["float32"][c], keyset["bfloat16"].get(c, {})) for c in keyset["float32"]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--nlu", action="store_true", help="add CommonsenseQA's validation questions")
    parser.add_argument("--eval-limit", type=int, default=0, help="cap the evaluation items (0 = all)")
    parser.add_argument("--score-items", type=int, default=8, help="identification questions per country")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--skip-evaluation", action="store_true")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-bf16"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = ["--countries", "targets"]
    held = export(work, args.data_dir, "heldout", "blend", *t, "--split", "heldout", "--limit", args.eval_limit)
    examples = read_examples(held)
    if args.nlu:
        csqa = export(work, args.data_dir, "csqa", "commonsenseqa", "--split", "heldout", "--limit", args.eval_limit)
        examples += read_examples(csqa)
    models = {d: load_model(args.model, dtype=d, device="cpu", progress=False) for d in DTYPES}
    report: dict[str, Any] = {"model": args.model, "threads": args.threads, "date": time.strftime("%Y-%m-%d")}
    if not args.skip_evaluation:
        report["evaluation"] = ev = evaluation(models, examples, args.batch_size, args.repeats)
        diff = ev["accuracy_difference"]
        print(f"{args.model}, {ev['items']} items: accuracy float32 {ev['accuracy']['float32']:.1f}, bfloat16 "
              f"{ev['accuracy']['bfloat16']:.1f}; difference {diff['value']:+.2f} [{diff['ci'][0]:+.2f}, "
              f"{diff['ci'][1]:+.2f}] points; predictions agree on {100 * ev['prediction_agreement']:.1f} %; "
              f"bfloat16 {ev['speedup']:.2f}x faster")  # fmt: skip
    if not args.skip_scoring:
        cap = ["--split", "identification", "--max-per-group", args.score_items]
        sets = {
            "score": read_examples(export(work, args.data_dir, "id", "blend", *t, *cap)),
            "control": read_examples(export(work, args.data_dir, "ctrl", "blend-control", *t, *cap)),
            "countryrc": read_examples(export(work, args.data_dir, "crc", "countryrc", *t, *cap)),
        }
        report["scoring"] = sc = scoring(models, sets, 8)
        rho = ", ".join(f"{s} {v:.4f}" for s, v in sc["spearman"].items())
        spec = ", ".join(f"{c} {v:.2f}" for c, v in sc["specific_jaccard"].items())
        print(f"scoring: bfloat16 {sc['speedup']:.2f}x faster; Spearman per site: {rho}; general set "
              f"{sc['general_sizes']} Jaccard {sc['general_jaccard']:.3f}; specific Jaccard: {spec}")  # fmt: skip
    report["load_average"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
