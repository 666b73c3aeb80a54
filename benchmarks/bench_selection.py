"""Selection speed and memory on synthetic ScoreTables the size of Llama-3.1-8B.

    python benchmarks/bench_selection.py                 # 32 layers, gate/up 14336, q 4096, k/v 1024, 16 countries
    python benchmarks/bench_selection.py --layers 4      # a quick smoke run

The tables (a dataset, its control, CountryRC with 8 countries) are written to a temporary folder.
A fresh worker process then loads them and times, on ``--threads`` CPU threads (default 2):
``select_general`` (defaults), ``select_specific`` for one country, ``select_specific_many`` for
all 8 CountryRC countries, and ``select_random`` (10 seeds). It reports each time and the worker's
peak RSS (which includes the loaded tables).
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

LLAMA_8B = {"mlp.gate": 14336, "mlp.up": 14336, "attn.q": 4096, "attn.k": 1024, "attn.v": 1024}
COUNTRIES = [
    "China",
    "Indonesia",
    "Iran",
    "Mexico",
    "South Korea",
    "Spain",
    "UK",
    "USA",
    "Algeria",
    "Assam",
    "Azerbaijan",
    "Ethiopia",
    "Greece",
    "North Korea",
    "Nigeria",
    "West Java",
]


def make_tables(folder: Path, layers: int, countries: int) -> None:
    from culture_neurons import ScoreTable

    groups = COUNTRIES[:countries]
    model = {"name_or_path": "synthetic-llama-3.1-8b", "config_sha256": "synthetic"}
    gen = torch.Generator().manual_seed(0)
    for name, grp, control in (
        ("dataset", groups, False),
        ("control", groups, True),
        ("countryrc", COUNTRIES[:8], False),
    ):
        scores = {s: torch.randn(layers, w, len(grp), generator=gen) for s, w in LLAMA_8B.items()}
        if control:
            scores = {s: t.clamp_(min=0) for s, t in scores.items()}
        counts = torch.full((len(grp),), 100, dtype=torch.int64)
        meta = {"model": model, "dataset": name, "options": {"control": control}}
        ScoreTable(scores, counts, torch.zeros(len(grp), dtype=torch.float64), grp, meta).save(
            folder / f"{name}.safetensors"
        )
        del scores


def worker(folder: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    from culture_neurons import ScoreTable
    from culture_neurons.selection import select_general, select_random, select_specific, select_specific_many

    start = time.perf_counter()
    d, c, crc = (ScoreTable.load(folder / f"{n}.safetensors") for n in ("dataset", "control", "countryrc"))
    times = {"load 3 tables": time.perf_counter() - start}

    def timed(label, fn):
        t0 = time.perf_counter()
        out = fn()
        times[label] = time.perf_counter() - t0
        return out

    general = timed("select_general", lambda: select_general([d], [c], crc))
    specific = timed("select_specific (1 country)", lambda: select_specific([d], [c], crc, "Iran"))
    many = timed("select_specific_many (8 countries)", lambda: select_specific_many([d], [c], crc))
    timed("select_random x10 (general)", lambda: [select_random(general, s) for s in range(10)])
    timed("select_random x10 layer-matched", lambda: [select_random(general, s, layer_matched=True) for s in range(10)])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "times_s": times,
                "peak_rss_mib": peak_mib,
                "general": len(general),
                "specific_iran": len(specific),
                "specific_sizes": {k: len(v) for k, v in many.items()},
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--countries", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_tables(folder, args.layers, args.countries)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(
            f"synthetic tables: {args.layers} layers, widths {LLAMA_8B}, {args.countries} countries; "
            f"{size:.0f} MiB on disk ({time.perf_counter() - t0:.1f} s to make)"
        )
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(folder), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.exit(out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    for label, seconds in result["times_s"].items():
        print(f"  {label:<40} {seconds:7.3f} s")
    print(f"  {'peak RSS of the worker (tables included)':<40} {result['peak_rss_mib']:7.0f} MiB")
    print(
        f"  sets: general {result['general']}, specific(Iran) {result['specific_iran']}, "
        f"per country {result['specific_sizes']}"
    )


if __name__ == "__main__":
    main()
