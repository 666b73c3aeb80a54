"""``culture-neurons select general|specific|random|import|export``: thin layers over the selectors.

Defaults come from :mod:`culture_neurons.selection.options`; per-country and per-seed file names
come from :mod:`culture_neurons.rundir` (its one slug rule), so no two groups ever share a file.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..attribution.scoretable import ScoreTable
from ..errors import InputError
from ..fileio import refuse_overwriting_inputs
from ..rundir import random_stem, specific_stem
from .general import select_general
from .neuronset import NeuronSet
from .options import GENERAL, SPECIFIC
from .randomsets import select_random
from .specific import select_specific_many


def _sites(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _tables(paths):
    return [ScoreTable.load(p) for p in paths]


def _crc(countryrc, no_countryrc):
    if countryrc is None and not no_countryrc:
        raise InputError(
            "give the CountryRC table with --countryrc, or --no-countryrc to skip the country-name exclusion"
        )
    if countryrc is not None and no_countryrc:
        raise InputError("--countryrc and --no-countryrc contradict each other")
    return _tables([countryrc])[0] if countryrc else None


def parse_exclude(spec: str, default_r: float) -> tuple[str, float]:
    """``TABLE[:r]`` -> (path, r); ``r`` defaults to ``default_r`` (the CountryRC fraction)."""
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            r = float(tail)
        except ValueError:
            return spec, default_r  # a colon inside the path, not an r
        if not 0.0 <= r <= 1.0:
            raise InputError(f"--exclude {spec}: r must be a fraction between 0 and 1 (0.01 = 1%), got {tail}")
        return path, r
    return spec, default_r


def _exclusions(specs, default_r):
    parsed = [parse_exclude(s, default_r) for s in specs]
    return [(t, r) for t, (_, r) in zip(_tables([p for p, _ in parsed]), parsed)]


def _inputs(datasets, controls, countryrc, exclude=(), r=0.0) -> dict:
    return {
        "--dataset": list(datasets),
        "--control": list(controls),
        "--countryrc": countryrc,
        "--exclude": [parse_exclude(s, r)[0] for s in exclude],
    }


def _summary(ns) -> str:
    per = ", ".join(f"{s} {n}" for s, n in ns.site_counts().items()) or "none"
    return f"{ns.kind}: {len(ns)} neurons ({per})"


def _table_options(r_default: float) -> list:
    return [
        click.option(
            "--dataset",
            "-d",
            "datasets",
            multiple=True,
            required=True,
            type=click.Path(dir_okay=False),
            help="Dataset ScoreTable; repeat to sum several datasets' control-subtracted scores.",
        ),
        click.option(
            "--control",
            "-c",
            "controls",
            multiple=True,
            required=True,
            type=click.Path(dir_okay=False),
            help="Control ScoreTable: one per --dataset (same order) or one for all.",
        ),
        click.option("--countryrc", type=click.Path(dir_okay=False), default=None, help="CountryRC ScoreTable."),
        click.option("--no-countryrc", is_flag=True, help="Skip the CountryRC exclusion."),
        click.option(
            "--r", "r", type=float, default=r_default, show_default=True, help="CountryRC exclusion fraction."
        ),
        click.option(
            "--exclude",
            "exclude",
            multiple=True,
            metavar="TABLE[:r]",
            help="Also drop the neurons in each pool's top r of this ScoreTable (summed over its groups), "
            "e.g. one scored on NLU data; r defaults to --r. Repeatable.",
        ),
    ]


def _with_table_options(r_default: float):
    def decorate(fn):
        for option in reversed(_table_options(r_default)):
            fn = option(fn)
        return fn

    return decorate


@click.group()
def select() -> None:
    """Select culture-general, culture-specific or random neuron sets from ScoreTables."""


@select.command()
@_with_table_options(GENERAL.r)
@click.option("--t-mlp", type=float, default=GENERAL.t_mlp, show_default=True, help="Fraction of the MLP pool kept.")
@click.option(
    "--t-attn", type=float, default=GENERAL.t_attn, show_default=True, help="Fraction of the attention pool kept."
)
@click.option(
    "--mlp-sites",
    default=",".join(GENERAL.mlp_sites),
    show_default=True,
    help="MLP pool sites (use mlp.in for GPT-2/NeoX).",
)
@click.option(
    "--attn-sites", default=",".join(GENERAL.attn_sites), show_default=True, help="Attention pool sites ('' to skip)."
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output NeuronSet (.json).")
@click.option(
    "--reference-out", type=click.Path(dir_okay=False), default=None, help="Also write the reference code's JSON."
)
def general(
    datasets, controls, countryrc, no_countryrc, r, exclude, t_mlp, t_attn, mlp_sites, attn_sites, out, reference_out
) -> None:
    """Culture-general neurons: top by (dataset - control) score, minus CountryRC neurons."""
    refuse_overwriting_inputs(
        {"--out": out, "--reference-out": reference_out}, _inputs(datasets, controls, countryrc, exclude, r)
    )
    if reference_out and Path(reference_out) == Path(out):
        raise InputError(f"--out and --reference-out are the same file ({out}); give two paths")
    crc = _crc(countryrc, no_countryrc)
    ns = select_general(
        _tables(datasets),
        _tables(controls),
        crc,
        t_mlp=t_mlp,
        t_attn=t_attn,
        r=r,
        mlp_sites=_sites(mlp_sites),
        attn_sites=_sites(attn_sites),
        exclude=_exclusions(exclude, r),
    )
    ns.save(out)
    if reference_out:
        ns.to_reference(reference_out)
    click.echo(f"wrote {out}: {_summary(ns)}")


def _country_list(country: tuple[str, ...], countries: str | None) -> list[str] | str | None:
    named = list(country) + [c.strip() for c in (countries or "").split(",") if c.strip()]
    if named == ["targets"]:
        return "targets"
    if "targets" in named:
        raise InputError("--countries targets stands for the paper's 8 countries; do not mix it with country names")
    return named or None


def specific_paths(out: str | Path, countries: list[str]) -> dict[str, Path]:
    """Where ``select specific`` writes each country's set: ``OUT`` itself for one country and an
    ``OUT`` ending in .json, else ``OUT/specific-<slug>.json`` (distinct for distinct names)."""
    if len(countries) == 1 and str(out).endswith(".json"):
        return {countries[0]: Path(out)}
    return {c: Path(out) / f"{specific_stem(c)}.json" for c in countries}


@select.command()
@_with_table_options(SPECIFIC.r)
@click.option("--country", "country", multiple=True, help="Country (group name); repeat for several.")
@click.option(
    "--countries",
    default=None,
    help="Comma-separated countries, or 'targets' (the paper's 8). A named country missing from a table is "
    "an error. Default: every country the tables share (the others are listed as dropped).",
)
@click.option("--t", "t", type=float, default=SPECIFIC.t, show_default=True, help="Fraction of the pool kept.")
@click.option("--z", "z", type=float, default=SPECIFIC.z, show_default=True, help="Minimum z-score across countries.")
@click.option("--sites", default=",".join(SPECIFIC.sites), show_default=True, help="Pool sites.")
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(),
    help="Output .json for one country, else a folder (specific-<country>.json each).",
)
def specific(datasets, controls, countryrc, no_countryrc, r, exclude, country, countries, t, z, sites, out) -> None:
    """Culture-specific neurons of one or more countries."""
    refuse_overwriting_inputs({"--out": out}, _inputs(datasets, controls, countryrc, exclude, r))
    crc = _crc(countryrc, no_countryrc)
    sets = select_specific_many(
        _tables(datasets),
        _tables(controls),
        crc,
        _country_list(country, countries),
        t=t,
        r=r,
        z=z,
        sites=_sites(sites),
        exclude=_exclusions(exclude, r),
    )
    dropped = next(iter(sets.values())).params.get("dropped_countries", {}) if sets else {}
    for name, why in dropped.items():
        click.echo(f"dropped {name}: {why}", err=True)
    paths = specific_paths(out, list(sets))
    for name, ns in sets.items():
        ns.save(paths[name])
        click.echo(f"wrote {paths[name]}: {_summary(ns)}")


@select.command(name="random")
@click.option("--like", required=True, type=click.Path(dir_okay=False), help="The NeuronSet to imitate (.json).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Seed; repeat for several (default: --seeds).")
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Use seeds 0..N-1 when no --seed is given.",
)
@click.option(
    "--pool",
    default=None,
    help="Sites to draw from, e.g. 'mlp.gate,attn.q' (default: the pools LIKE was selected from).",
)
@click.option("--layer-matched", is_flag=True, help="Match LIKE's number of neurons per layer.")
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(),
    help="Output .json for one seed, else a folder (random-<seed>.json each).",
)
def random_(like, seeds, n_seeds, pool, layer_matched, out) -> None:
    """Random neuron sets of the same size as LIKE, one per seed."""
    seeds = list(dict.fromkeys(seeds)) or list(range(n_seeds))
    single = len(seeds) == 1 and str(out).endswith(".json")
    paths = {seed: Path(out) if single else Path(out) / f"{random_stem(seed)}.json" for seed in seeds}
    refuse_overwriting_inputs({"--out": list(paths.values())}, {"--like": like})
    base = NeuronSet.load(like)
    for seed in seeds:
        ns = select_random(base, seed, pool=_sites(pool) if pool else None, layer_matched=layer_matched)
        ns.save(paths[seed])
        click.echo(f"wrote {paths[seed]}: {_summary(ns)}")


@select.command(name="import")
@click.argument("reference", type=click.Path(dir_okay=False))
@click.option(
    "--table",
    type=click.Path(dir_okay=False),
    default=None,
    help="A ScoreTable of the same model, to check and record its shape.",
)
@click.option("--kind", default="reference", show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False))
def import_(reference, table, kind, out) -> None:
    """Convert a neuron JSON published with the paper's code (top_neurons) into a NeuronSet."""
    refuse_overwriting_inputs({"--out": out}, {"REFERENCE": reference, "--table": table})
    shape = _tables([table])[0] if table else None
    ns = NeuronSet.from_reference(reference, shape=shape, kind=kind)
    ns.save(out)
    click.echo(f"wrote {out}: {_summary(ns)}")


@select.command(name="export")
@click.argument("neurons", type=click.Path(dir_okay=False))
@click.option("--model-name", default=None, help="model_name to write (default: the set's model).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False))
def export(neurons, model_name, out) -> None:
    """Write a NeuronSet in the reference code's JSON format (top_neurons)."""
    refuse_overwriting_inputs({"--out": out}, {"NEURONS": neurons})
    ns = NeuronSet.load(neurons)
    ns.to_reference(out, model_name=model_name)
    click.echo(f"wrote {out}: {_summary(ns)}")
