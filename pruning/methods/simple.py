"""Data-free baselines: weight magnitude and random scores."""

from __future__ import annotations

import torch
from torch import nn

from ..architectures import denoiser_of
from ..config import MagnitudeConfig, RandomConfig
from ..targets import UnitGroup
from .unit_weights import per_unit


def magnitude_scores(denoiser: nn.Module, groups: list[UnitGroup]) -> dict[str, torch.Tensor]:
    """Mean absolute weight of each unit (normalized per parameter so heads and FFN units compare)."""
    return {g.name: (per_unit(denoiser, g, torch.abs) / g.params_per_unit).float() for g in groups}


def random_scores(groups: list[UnitGroup], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(int(seed))
    return {g.name: torch.rand(g.n_units, generator=gen) for g in groups}


# The registry's scorers (see pruning.registry for the signature); calibration and sampling go unused.


def score_magnitude(pipe, groups, calibration, sampling, config: MagnitudeConfig, checkpoint_dir=None):
    return magnitude_scores(denoiser_of(pipe), groups), {}


def score_random(pipe, groups, calibration, sampling, config: RandomConfig, checkpoint_dir=None):
    return random_scores(groups, config.seed), {"seed": config.seed}
