"""How sparse a set of masks is expected to be, and a controller that steers it to a target.

The expected removed share is computed from each gate's probability of being closed, ``q = 1 - P(open)``
(:meth:`MaskSet.p_open`), in one of three weightings (``penalty``):

- ``params``: the expected share of the prunable *parameters* removed, counted exactly as a plan counts
  them: a unit removes its own parameters, and a group whose units all close also removes its shared
  parameters (output bias, norms), with probability ``prod(q)`` as gates are sampled independently.
- ``units``: the expected share of units removed (what a plan with ``target: units`` counts).
- ``layer-mean``: the mean over groups of the expected removed share of the group's units (the paper's
  L0 penalty: it counts a head like an FFN unit and every layer alike).

:class:`LagrangianController` adds ``lambda1 (s - t) + lambda2 (s - t)^2`` to the loss (CoFi, Sheared-LLaMA)
and raises the multipliers by gradient ascent on the constraint violation, with the target ``t`` ramped in
linearly over a warm-up. Plain dual ascent winds up while the expected share lags behind the moving
target and then overshoots it; here ``lambda1`` is reset to zero whenever it still pushes in the direction
of an error that has already changed sign (anti-windup), so the multiplier brakes instead of carrying on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..config import PENALTIES
from ..masks import MaskSet


def expected_removed(masks: MaskSet, penalty: str = "params") -> torch.Tensor:
    """Expected share removed (differentiable in the logits), weighted as ``penalty`` says (module doc)."""
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {', '.join(PENALTIES)}; got {penalty!r}")
    removed, total, layer_means = [], 0, []
    for name, g in masks.groups.items():
        q = 1.0 - masks.p_open(name)
        if penalty == "layer-mean":
            layer_means.append(q.mean())
        elif penalty == "units":
            removed.append(q.sum())
            total += g.n_units
        else:
            all_closed = torch.exp(torch.log(q.clamp_min(1e-12)).sum())
            removed.append(g.params_per_unit * q.sum() + g.params_shared * all_closed)
            total += g.params_total
    if penalty == "layer-mean":
        return torch.stack(layer_means).mean()
    return torch.stack(removed).sum() / total


def closed_share(masks: MaskSet) -> float:
    """Share of the prunable parameters held by closed gates (as a plan would count removing exactly them)."""
    removed = 0
    for name, g in masks.groups.items():
        n = int(masks.closed(name).sum())
        removed += g.params_removed(n)
    return removed / sum(g.params_total for g in masks.groups.values())


@dataclass
class LagrangianController:
    """Drives an expected sparsity ``s`` to ``target``; multipliers by damped dual ascent (module doc)."""

    target: float
    warmup_steps: int
    dual_lr: float = 0.3
    lambda1: float = 0.0
    lambda2: float = 0.0

    def target_at(self, step: int) -> float:
        """The ramped target of optimizer step ``step`` (0-based): linear up to ``target`` over the warm-up."""
        if self.warmup_steps <= 0:
            return self.target
        return self.target * min(1.0, (step + 1) / self.warmup_steps)

    def penalty(self, s: torch.Tensor, step: int) -> torch.Tensor:
        gap = s - self.target_at(step)
        return self.lambda1 * gap + self.lambda2 * gap * gap

    def update(self, s: float, step: int) -> None:
        """Gradient ascent on the multipliers after an optimizer step that reached expected sparsity ``s``."""
        gap = s - self.target_at(step)
        self.lambda1 += self.dual_lr * gap
        self.lambda2 += self.dual_lr * gap * gap
        # still pushing towards an error that has changed sign: brake, don't carry on
        if self.lambda1 * gap < 0:
            self.lambda1 = 0.0

    def state(self) -> dict:
        return asdict(self)
