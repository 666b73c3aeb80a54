"""Stability selection on the validity cells: the neurons chosen in most fold x template cells.

Every (fold, template) cell that :mod:`.folds` scores is one resample: the default rules (general,
and specific per country) run on each cell against that template's control table and the CountryRC
table, and the neurons selected in at least a fraction ``stable_pi`` of the cells form the stable
set (:mod:`culture_neurons.selection.stability`). Written next to the summary:

- ``stable.json``: the stable general set (kind ``stable:general``; each neuron's score is its
  selection frequency; ``params.stability`` holds K, pi, the per-pool q and p, the
  Meinshausen–Bühlmann bound and the size and Jaccard of the plain set);
- ``stable-<country slug>.json``: the stable specific set of each country;
- ``stable.csv``: ``site, layer, index, frequency, stable, in_plain`` for every neuron any cell selected.

With 2 folds and one template the cells are two complementary halves, the setting in which the bound
holds (Shah & Samworth 2013). With several templates a cell is a half *and* one wording, so a neuron
must survive both kinds of change; the bound then also assumes the templates' selections are
exchangeable for the null neurons, and is read as an approximation.
"""

from __future__ import annotations

from typing import Any

from ..rundir import slug
from ..selection.specific import select_specific_many
from ..selection.stability import Resample, stable_general, stable_specific_many
from .faithfulness import write_csv
from .folds import cell_name
from .study import Study

STABLE_FILE = "stable.json"
STABLE_CSV = "stable.csv"


def stable_rel(country: str | None = None) -> str:
    """``stable.json``, or ``stable-<country slug>.json`` for a country's specific set (inside ``validity/``)."""
    return STABLE_FILE if country is None else f"stable-{slug(country)}.json"


def cell_resamples(study: Study) -> list[Resample]:
    """One resample per (fold, template) cell, with its template's control and the CountryRC table."""
    crc = study.countryrc_table
    return [
        Resample([table], study.controls(template), crc, name=cell_name(fold, template))
        for (fold, template), table in study.cells.items()
    ]


def stable_sets(study: Study) -> dict[str, Any]:
    """Select on every cell, keep the neurons in at least ``stable_pi`` of them, write the sets; the summary part."""
    s, pi = study.settings, study.options.stable_pi
    resamples = cell_resamples(study)
    plain = study.default_set
    general = stable_general(
        resamples,
        pi,
        t_mlp=s.t_mlp,
        t_attn=s.t_attn,
        r=s.r,
        mlp_sites=s.mlp_sites,
        attn_sites=s.attn_sites,
        plain=plain,
    )
    study.out.mkdir(parents=True, exist_ok=True)
    general.set.save(study.out / stable_rel())
    write_csv(general.frequency_rows(plain), study.out / STABLE_CSV)
    out: dict[str, Any] = {"resamples": [r.name for r in resamples], "general": general.summary(plain)}
    specific_plain = select_specific_many(
        [study.full_table],
        study.controls(),
        study.countryrc_table,
        None,
        t=s.specific_t,
        r=s.r,
        z=s.specific_z,
        sites=s.specific_sites,
    )
    specific = stable_specific_many(
        resamples, pi, None, t=s.specific_t, r=s.r, z=s.specific_z, sites=s.specific_sites, plain=specific_plain
    )
    out["specific"] = {}
    for country, result in specific.items():
        result.set.save(study.out / stable_rel(country))
        out["specific"][country] = {**result.summary(specific_plain[country]), "file": stable_rel(country)}
    return out
