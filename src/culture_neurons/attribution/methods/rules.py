"""Quadrature rules for integrated gradients: where on the path the gradient is taken, and its weights.

The names and the points are captum's (``captum.attr._utils.approximation_methods``), so a table made
with a rule here can be checked against captum's ``LayerIntegratedGradients`` with the same rule
(tests/test_methods.py does, for every rule):

- ``gausslegendre`` (captum's default): the Gauss-Legendre nodes of [-1, 1] mapped to [0, 1], with
  half their weights; exact for polynomials of degree up to 2k - 1 along the path;
- ``riemann_trapezoid``: k evenly spaced points from 0 to 1, weight 1/(k - 1), the two ends at half
  weight (the trapezoid rule). captum weighs the same points 1/k, so its weights sum to (k - 1)/k and
  its attributions are (k - 1)/k of these: a bias that vanishes only as k grows;
- ``riemann_left``, ``riemann_right``, ``riemann_middle``: k points at the left ends, right ends or
  middles of k equal intervals, weight 1/k each.
"""

from __future__ import annotations

import numpy as np
import torch

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alphas, weights)``, float64 ``[steps]``: the path points in [0, 1] and their weights (summing to 1)."""
    k = steps
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(k)
        alphas, weights = 0.5 * (1 + nodes), 0.5 * weights
    elif rule == "riemann_trapezoid":
        alphas = np.linspace(0, 1, k)
        weights = np.full(k, 1 / (k - 1))
        weights[[0, -1]] = 1 / (2 * (k - 1))
    elif rule == "riemann_left":
        alphas, weights = np.linspace(0, 1 - 1 / k, k), np.full(k, 1 / k)
    elif rule == "riemann_right":
        alphas, weights = np.linspace(1 / k, 1, k), np.full(k, 1 / k)
    elif rule == "riemann_middle":
        alphas, weights = np.linspace(1 / (2 * k), 1 - 1 / (2 * k), k), np.full(k, 1 / k)
    else:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
