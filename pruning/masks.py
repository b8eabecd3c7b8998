"""Differentiable unit masks attached to a denoiser as removable forward pre-hooks.

A mask scales the input columns of each *consumer* linear (the layer that reads the units' outputs), so
it works with any attention processor and exactly mimics removal: a head or FFN unit whose columns are
zeroed contributes nothing downstream.

Parametrizations (one learnable logit per unit):
- ``hard-concrete`` (Louizos et al.): stochastic, stretched and clamped; exact zeros and ones are reachable.
- ``sigmoid``: deterministic ``sigmoid(logit)``.
- ``binary``: fixed 0/1 (from a plan), nothing learnable.

Modes: ``train`` (stochastic where the parametrization is), ``deterministic`` (noise-free), ``hard``
(binary ``logit > 0``, what a pruned model computes), ``off`` (all ones: the unmasked model).
The hard-concrete noise is drawn from an explicit seed (:meth:`MaskSet.resample`) so a step's forward pass
and its recomputation in time-step checkpointing see the very same masks and gradients stay exact.
``noise_bound`` optionally limits the logistic noise to +-bound (the official code bounds it); the gate
probabilities of :meth:`MaskSet.p_open` are exact for either noise.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from .config import PARAMETRIZATIONS
from .targets import UnitGroup

MODES = ("train", "deterministic", "hard", "off")

# Hard-concrete constants from the L0-regularization paper, as used by EcoDiff.
BETA, GAMMA, ZETA = 0.83, -0.1, 1.1
INIT_LOGIT = 3.0
# A hard-concrete gate is non-zero iff logit + logistic noise > OPEN_SHIFT (stretched sigmoid above 0).
OPEN_SHIFT = BETA * math.log(-GAMMA / ZETA)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


class MaskSet(nn.Module):
    """One logit vector per unit group plus the hooks that apply the resulting masks."""

    def __init__(
        self,
        groups: list[UnitGroup],
        parametrization: str = "hard-concrete",
        init: float = INIT_LOGIT,
        logits: dict[str, torch.Tensor] | None = None,
        noise_bound: float | None = None,
    ):
        super().__init__()
        self.parametrization = _check("parametrization", parametrization, PARAMETRIZATIONS)
        if noise_bound is not None and not noise_bound > 0:
            raise ValueError(
                f"noise_bound must be > 0 (logit units) or None (unbounded); got {noise_bound!r}"
            )
        self.noise_bound = noise_bound
        self.groups = {g.name: g for g in groups}
        self._keys = {g.name: f"g{i}" for i, g in enumerate(groups)}
        learnable = parametrization != "binary"
        self.logits = nn.ParameterDict(
            {
                self._keys[g.name]: nn.Parameter(
                    (logits[g.name].float().clone() if logits else torch.full((g.n_units,), float(init))),
                    requires_grad=learnable,
                )
                for g in groups
            }
        )
        self.mode = "train" if learnable else "hard"
        self._noise: dict[str, torch.Tensor] = {}
        self._handles: list = []

    # -- logits by group name ---------------------------------------------------------------------------------
    def logit(self, group: str) -> torch.Tensor:
        return self.logits[self._keys[group]]

    def named_logits(self) -> dict[str, torch.Tensor]:
        return {name: self.logit(name).detach().cpu().clone() for name in self.groups}

    # -- noise ------------------------------------------------------------------------------------------------
    def resample(self, seed: int) -> None:
        """Draw the hard-concrete noise for the next forward from ``seed`` (same seed, same masks)."""
        gen = torch.Generator().manual_seed(int(seed))
        lo = 1e-6 if self.noise_bound is None else 1.0 / (1.0 + math.exp(self.noise_bound))
        self._noise = {
            name: lo + (1 - 2 * lo) * torch.rand(g.n_units, generator=gen) for name, g in self.groups.items()
        }

    # -- mask values ------------------------------------------------------------------------------------------
    def mask(self, group: str) -> torch.Tensor:
        logit = self.logit(group)
        mode = self.mode
        if mode == "off":
            return torch.ones_like(logit)
        if mode == "hard" or self.parametrization == "binary":
            return (logit > 0).to(logit.dtype)
        if self.parametrization == "sigmoid":
            return torch.sigmoid(logit)
        if mode == "train":
            if group not in self._noise:
                raise RuntimeError(
                    "hard-concrete masks need noise: call MaskSet.resample(seed) before forward"
                )
            u = self._noise[group].to(logit.device)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logit) / BETA)
        else:  # deterministic
            s = torch.sigmoid(logit)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def p_open(self, group: str) -> torch.Tensor:
        """Probability that each unit's training-mode mask is non-zero (differentiable in the logits).

        Hard-concrete: P(logit + n > OPEN_SHIFT) for logistic noise n, i.e. sigmoid(logit - OPEN_SHIFT) when
        unbounded (Louizos et al.'s expected L0) and the uniform share of the bounded noise interval otherwise.
        Sigmoid masks count their value as the probability; binary masks are 0 or 1.
        """
        logit = self.logit(group)
        if self.parametrization == "binary":
            return (logit > 0).to(logit.dtype)
        if self.parametrization == "sigmoid":
            return torch.sigmoid(logit)
        if self.noise_bound is None:
            return torch.sigmoid(logit - OPEN_SHIFT)
        lo = 1.0 / (1.0 + math.exp(self.noise_bound))
        return ((1 - lo - torch.sigmoid(OPEN_SHIFT - logit)) / (1 - 2 * lo)).clamp(0.0, 1.0)

    def closed(self, group: str) -> torch.Tensor:
        """Units whose gate is more likely closed than open (the units training chose to remove)."""
        with torch.no_grad():
            return self.p_open(group) < 0.5

    def sparsity_loss(self) -> torch.Tensor:
        """Mean over groups of the expected share of open gates (the paper's L0 penalty for hard-concrete)."""
        return torch.stack([self.p_open(name).mean() for name in self.groups]).mean()

    @contextmanager
    def using(self, mode: str):
        previous, self.mode = self.mode, _check("mode", mode, MODES)
        try:
            yield self
        finally:
            self.mode = previous

    # -- hooks ------------------------------------------------------------------------------------------------
    def attach(self, denoiser: nn.Module) -> MaskSet:
        """Register one pre-hook per consumer linear. Call :meth:`detach` (or use as a context) to remove."""
        if self._handles:
            raise RuntimeError("masks are already attached")
        segments: dict[str, list[tuple[int, UnitGroup]]] = {}
        for g in self.groups.values():
            for c in g.consumers:
                segments.setdefault(c.path, []).append((c.offset, g))
        for path, segs in segments.items():
            linear = denoiser.get_submodule(path)
            self._handles.append(
                linear.register_forward_pre_hook(self._make_hook(linear, sorted(segs, key=_first)))
            )
        return self

    def _make_hook(self, linear: nn.Linear, segments: list[tuple[int, UnitGroup]]):
        def scale_columns(module, args):
            (x, *rest) = args
            pieces, cursor = [], 0
            for offset, g in segments:
                if offset > cursor:  # columns no group owns keep their value
                    pieces.append(torch.ones(offset - cursor, device=x.device, dtype=x.dtype))
                pieces.append(self.mask(g.name).to(device=x.device, dtype=x.dtype).repeat_interleave(g.width))
                cursor = offset + g.n_units * g.width
            if cursor < linear.in_features:
                pieces.append(torch.ones(linear.in_features - cursor, device=x.device, dtype=x.dtype))
            return (x * torch.cat(pieces), *rest)

        return scale_columns

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()


def _first(item):
    return item[0]
