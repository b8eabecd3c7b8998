"""Per-unit reductions over the weights a unit owns (its producer rows and consumer columns)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..targets import UnitGroup


def per_unit(
    denoiser: nn.Module, group: UnitGroup, value: Callable[[nn.Parameter], torch.Tensor]
) -> torch.Tensor:
    """Sum of ``value(param)`` (elementwise, same shape as the parameter) over each unit's own weights.

    Producer rows (and their bias entries) and consumer columns of unit ``u`` are summed into entry ``u``.
    """
    total = torch.zeros(group.n_units, dtype=torch.float64)
    for prod in group.producers:
        lin = denoiser.get_submodule(prod.path)
        for offset in prod.offsets:
            for param in (lin.weight, lin.bias):
                if param is None:
                    continue
                rows = value(param).detach().double().cpu()[offset : offset + group.n_units * group.width]
                total += rows.reshape(group.n_units, group.width, -1).sum(dim=(1, 2))
    for cons in group.consumers:
        lin = denoiser.get_submodule(cons.path)
        cols = (
            value(lin.weight)
            .detach()
            .double()
            .cpu()[:, cons.offset : cons.offset + group.n_units * group.width]
        )
        total += cols.reshape(cols.shape[0], group.n_units, group.width).sum(dim=(0, 2))
    return total


def owned_parameters(denoiser: nn.Module, groups: list[UnitGroup]) -> list[nn.Parameter]:
    """Every parameter that holds some unit's weights (deduplicated)."""
    seen, params = set(), []
    for g in groups:
        for path in [p.path for p in g.producers] + [c.path for c in g.consumers]:
            lin = denoiser.get_submodule(path)
            for p in (lin.weight, lin.bias):
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params
