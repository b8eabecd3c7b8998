"""From unit scores to a pruning plan: which units of which module are kept.

Scores are higher-is-more-important, one vector per unit group. The target is a fraction of the prunable
parameters (default) or of the units; units are removed lowest score first until the target is reached.
Ranking is ``global`` (one list across every group), ``per-kind`` (heads and FFN units each reach the
target on their own) or ``per-layer`` (every group reaches it on its own). Parameter accounting is exact,
including a module's shared parameters that vanish when all its units go.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .targets import KINDS, UnitGroup

RANKINGS = ("global", "per-kind", "per-layer")
TARGETS = ("params", "units")
PLAN_VERSION = 1


@dataclass
class ModulePlan:
    kind: str
    total: int
    kept: list[int]
    params_per_unit: int
    params_shared: int

    @property
    def n_removed(self) -> int:
        return self.total - len(self.kept)

    def params_removed(self) -> int:
        removed = self.n_removed * self.params_per_unit
        return removed + (self.params_shared if not self.kept else 0)


@dataclass
class PruningPlan:
    """Kept unit indices per unit group (keyed by group name), the target, and the achieved ratios."""

    modules: dict[str, ModulePlan]
    method: str
    ratio: float
    target: str = "params"
    ranking: str = "global"
    architecture: str = ""
    total_params: int | None = None  # of the whole denoiser before pruning
    info: dict = field(default_factory=dict)

    # -- accounting -------------------------------------------------------------------------------------------
    @property
    def prunable_params(self) -> int:
        return sum(m.params_per_unit * m.total + m.params_shared for m in self.modules.values())

    @property
    def params_removed(self) -> int:
        return sum(m.params_removed() for m in self.modules.values())

    @property
    def units_total(self) -> int:
        return sum(m.total for m in self.modules.values())

    @property
    def units_removed(self) -> int:
        return sum(m.n_removed for m in self.modules.values())

    def achieved(self) -> dict:
        out = {
            "params_removed": self.params_removed,
            "params_prunable": self.prunable_params,
            "params_removed_frac_of_prunable": self.params_removed / self.prunable_params,
            "units_removed": self.units_removed,
            "units_total": self.units_total,
            "units_removed_frac": self.units_removed / self.units_total,
        }
        for kind in KINDS:
            mods = [m for m in self.modules.values() if m.kind == kind]
            if mods:
                out[f"{kind}_removed_frac"] = sum(m.n_removed for m in mods) / sum(m.total for m in mods)
        if self.total_params:
            out["params_removed_frac_of_model"] = self.params_removed / self.total_params
        return out

    # -- JSON -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "version": PLAN_VERSION,
            "method": self.method,
            "ratio": self.ratio,
            "target": self.target,
            "ranking": self.ranking,
            "architecture": self.architecture,
            "total_params": self.total_params,
            "achieved": self.achieved(),
            "info": self.info,
            "modules": {name: asdict(m) for name, m in self.modules.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> PruningPlan:
        if d.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {d.get('version')!r} is not supported (expected {PLAN_VERSION})")
        return cls(
            modules={name: ModulePlan(**m) for name, m in d["modules"].items()},
            method=d["method"],
            ratio=d["ratio"],
            target=d["target"],
            ranking=d["ranking"],
            architecture=d.get("architecture", ""),
            total_params=d.get("total_params"),
            info=d.get("info", {}),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PruningPlan:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def keep_all(self) -> bool:
        return self.units_removed == 0


def _cost(group: UnitGroup, n_removed_before: int, target: str) -> int:
    """Cost (params or units) of removing one more unit from a group that already lost n_removed_before."""
    if target == "units":
        return 1
    return group.params_removed(n_removed_before + 1) - group.params_removed(n_removed_before)


def _select(groups: list[UnitGroup], scores: dict[str, torch.Tensor], ratio: float, target: str) -> dict[str, set]:
    """Remove lowest-scoring units across ``groups`` until ``ratio`` of their params/units is removed."""
    total = sum(g.params_total if target == "params" else g.n_units for g in groups)
    budget = ratio * total
    order = sorted(
        ((float(scores[g.name][u]), gi, u) for gi, g in enumerate(groups) for u in range(g.n_units)),
    )
    removed: dict[str, set] = {g.name: set() for g in groups}
    done = 0
    for _, gi, u in order:
        if done >= budget:
            break
        g = groups[gi]
        done += _cost(g, len(removed[g.name]), target)
        removed[g.name].add(u)
    return removed


def make_plan(
    groups: list[UnitGroup],
    scores: dict[str, torch.Tensor],
    ratio: float,
    *,
    method: str,
    target: str = "params",
    ranking: str = "global",
    architecture: str = "",
    total_params: int | None = None,
    info: dict | None = None,
    align: int | None = None,
) -> PruningPlan:
    """Build a plan that removes ``ratio`` of the prunable params (or units) by ascending score.

    ``align`` (e.g. 8, 64, 128) rounds every partly pruned FFN module's kept width to a multiple of it
    (see :func:`align_ffn_widths`); heads are whole units already and stay as they are.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1); got {ratio!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
    missing = [g.name for g in groups if g.name not in scores]
    if missing:
        raise ValueError(f"scores are missing for {len(missing)} unit groups, e.g. {missing[0]}")
    for g in groups:
        if scores[g.name].numel() != g.n_units:
            raise ValueError(f"{g.name}: {scores[g.name].numel()} scores for {g.n_units} units")
    if align is not None and (isinstance(align, bool) or not isinstance(align, int) or align < 1):
        raise ValueError(f"align must be a positive integer (e.g. 8, 64, 128) or None; got {align!r}")

    if ranking == "global":
        pools = [groups]
    elif ranking == "per-kind":
        pools = [[g for g in groups if g.kind == k] for k in KINDS]
    else:
        pools = [[g] for g in groups]
    removed: dict[str, set] = {}
    alignment = []
    for pool in pools:
        if pool:
            removed.update(_select(pool, scores, ratio, target))
            if align is not None:
                alignment.append(align_ffn_widths(pool, scores, removed, ratio, target, align))
    modules = {
        g.name: ModulePlan(
            kind=g.kind,
            total=g.n_units,
            kept=[u for u in range(g.n_units) if u not in removed[g.name]],
            params_per_unit=g.params_per_unit,
            params_shared=g.params_shared,
        )
        for g in groups
    }
    plan = PruningPlan(modules, method, ratio, target, ranking, architecture, total_params, dict(info or {}))
    if align is not None:
        plan.info["align"] = {
            "multiple": align,
            "removed_frac_before": sum(a["removed_before"] for a in alignment) / sum(a["total"] for a in alignment),
            "removed_frac_after": sum(a["removed_after"] for a in alignment) / sum(a["total"] for a in alignment),
            "of": target,
            **{k: sum(a[k] for a in alignment) for k in ("rounded_up", "rounded_down", "unchanged")},
        }
    return plan


# -- hardware alignment -------------------------------------------------------------------------------------


def _width_options(n_kept: int, n_units: int, multiple: int) -> tuple[int | None, int] | None:
    """(narrower, wider) aligned kept widths around ``n_kept``; None when it needs no rounding.

    The unpruned width counts as aligned (the module keeps its original shape), and a module is never
    rounded down to nothing: emptying a module is a decision of the ranking, not of the rounding.
    """
    if n_kept in (0, n_units) or n_kept % multiple == 0:
        return None
    down = n_kept // multiple * multiple
    return (down or None), min(down + multiple, n_units)


def align_ffn_widths(
    pool: list[UnitGroup],
    scores: dict[str, torch.Tensor],
    removed: dict[str, set],
    ratio: float,
    target: str,
    multiple: int,
) -> dict:
    """Round each partly pruned FFN module of ``pool`` to a kept width that is a multiple of ``multiple``.

    A GPU multiplies in tiles (8 to 128 wide); a kept width of 229 pays for 256. Each module is rounded
    either down (dropping its lowest-scoring kept units) or up (adding back its highest-scoring removed
    units). Which modules go down is decided for the pool as a whole so that the removed share stays as
    close as possible to ``ratio``: modules whose undecided units (ranks between the two widths) score
    lowest are rounded down first, and the number rounded down is the one landing nearest the budget.
    Updates ``removed`` in place; returns the pool's accounting before and after.
    """

    def cost(g: UnitGroup, n_removed: int) -> int:
        return n_removed if target == "units" else g.params_removed(n_removed)

    total = sum(cost(g, g.n_units) for g in pool)
    before = sum(cost(g, len(removed[g.name])) for g in pool)
    choices = []  # (undecided units' mean score, group, ranking, narrower, wider)
    unchanged = 0
    for g in pool:
        if g.kind != "ffn":
            continue
        options = _width_options(g.n_units - len(removed[g.name]), g.n_units, multiple)
        if options is None:
            unchanged += 1
            continue
        down, up = options
        ranking = torch.argsort(scores[g.name].float(), descending=True, stable=True).tolist()
        band = scores[g.name].float()[ranking[down or 0 : up]].mean().item()
        choices.append((band, g, ranking, down, up))

    # Start with every module rounded up, then round down those with the weakest undecided units while
    # that brings the pool closer to its budget.
    width = {g.name: up for _, g, _, _, up in choices}
    done = before + sum(cost(g, g.n_units - up) - cost(g, len(removed[g.name])) for _, g, _, _, up in choices)
    budget = ratio * total
    for _, g, _, down, up in sorted((c for c in choices if c[3] is not None), key=lambda c: c[0]):
        step = cost(g, g.n_units - down) - cost(g, g.n_units - up)
        if abs(budget - done - step) >= abs(budget - done):
            break
        width[g.name], done = down, done + step
    for _, g, ranking, _, _ in choices:
        removed[g.name] = set(ranking[width[g.name]:])
    rounded_down = sum(width[g.name] == down for _, g, _, down, _ in choices)
    return {"total": total, "removed_before": before, "removed_after": done, "rounded_up": len(choices) - rounded_down,
            "rounded_down": rounded_down, "unchanged": unchanged}
