"""``culture-neurons select general|specific|random|import|export``: thin layers over the selectors."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click

from ..errors import InputError
from .select import select_general, select_random, select_specific_many


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def _sites(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "set"


def _tables(paths):
    from ..attribution.scoretable import ScoreTable

    return [ScoreTable.load(p) for p in paths]


def _crc(countryrc, no_countryrc):
    from ..attribution.scoretable import ScoreTable

    if countryrc is None and not no_countryrc:
        raise InputError(
            "give the CountryRC table with --countryrc, or --no-countryrc to skip the country-name exclusion"
        )
    if countryrc is not None and no_countryrc:
        raise InputError("--countryrc and --no-countryrc contradict each other")
    return ScoreTable.load(countryrc) if countryrc else None


def _summary(ns) -> str:
    per = ", ".join(f"{s} {n}" for s, n in ns.site_counts().items()) or "none"
    return f"{ns.kind}: {len(ns)} neurons ({per})"


_table_options = [
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
        "--r",
        "r",
        type=float,
        default=_default(select_general, "r"),
        show_default=True,
        help="CountryRC exclusion fraction.",
    ),
]


def _with_table_options(fn):
    for option in reversed(_table_options):
        fn = option(fn)
    return fn


@click.group()
def select() -> None:
    """Select culture-general, culture-specific or random neuron sets from ScoreTables."""


@select.command()
@_with_table_options
@click.option(
    "--t-mlp",
    type=float,
    default=_default(select_general, "t_mlp"),
    show_default=True,
    help="Fraction of the MLP pool kept.",
)
@click.option(
    "--t-attn",
    type=float,
    default=_default(select_general, "t_attn"),
    show_default=True,
    help="Fraction of the attention pool kept.",
)
@click.option(
    "--mlp-sites",
    default=",".join(_default(select_general, "mlp_sites")),
    show_default=True,
    help="MLP pool sites (use mlp.in for GPT-2/NeoX).",
)
@click.option(
    "--attn-sites",
    default=",".join(_default(select_general, "attn_sites")),
    show_default=True,
    help="Attention pool sites ('' to skip).",
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output NeuronSet (.json).")
@click.option(
    "--reference-out", type=click.Path(dir_okay=False), default=None, help="Also write the reference code's JSON."
)
def general(
    datasets, controls, countryrc, no_countryrc, r, t_mlp, t_attn, mlp_sites, attn_sites, out, reference_out
) -> None:
    """Culture-general neurons: top by (dataset - control) score, minus CountryRC neurons."""
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
    )
    ns.save(out)
    if reference_out:
        ns.to_reference(reference_out)
    click.echo(f"wrote {out}: {_summary(ns)}")


@select.command()
@_with_table_options
@click.option(
    "--country",
    "countries",
    multiple=True,
    help="Country (group name); repeat for several. Default: every CountryRC country.",
)
@click.option(
    "--t",
    "t",
    type=float,
    default=_default(select_specific_many, "t"),
    show_default=True,
    help="Fraction of the pool kept.",
)
@click.option(
    "--z",
    "z",
    type=float,
    default=_default(select_specific_many, "z"),
    show_default=True,
    help="Minimum z-score across countries.",
)
@click.option(
    "--sites", default=",".join(_default(select_specific_many, "sites")), show_default=True, help="Pool sites."
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(),
    help="Output .json for one country, else a folder (specific-<country>.json each).",
)
def specific(datasets, controls, countryrc, no_countryrc, r, countries, t, z, sites, out) -> None:
    """Culture-specific neurons of one or more countries."""
    crc = _crc(countryrc, no_countryrc)
    sets = select_specific_many(
        _tables(datasets), _tables(controls), crc, list(countries) or None, t=t, r=r, z=z, sites=_sites(sites)
    )
    single = len(sets) == 1 and str(out).endswith(".json")
    for country, ns in sets.items():
        path = Path(out) if single else Path(out) / f"specific-{_slug(country)}.json"
        ns.save(path)
        click.echo(f"wrote {path}: {_summary(ns)}")


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
    from .neuronset import NeuronSet

    base = NeuronSet.load(like)
    seeds = list(seeds) or list(range(n_seeds))
    single = len(seeds) == 1 and str(out).endswith(".json")
    for seed in seeds:
        ns = select_random(base, seed, pool=_sites(pool) if pool else None, layer_matched=layer_matched)
        path = Path(out) if single else Path(out) / f"random-{seed}.json"
        ns.save(path)
        click.echo(f"wrote {path}: {_summary(ns)}")


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
    from .neuronset import NeuronSet

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
    from .neuronset import NeuronSet

    ns = NeuronSet.load(neurons)
    ns.to_reference(out, model_name=model_name)
    click.echo(f"wrote {out}: {_summary(ns)}")
