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

from .config import RANKINGS, TARGETS
from .targets import KINDS, UnitGroup

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
    def from_dict(cls, d: dict, source: str | Path = "plan") -> PruningPlan:
        """A plan from its JSON form, every field checked; :class:`PlanError` names ``source``, the field
        and the value of the first problem."""
        return _parse_plan(d, str(source))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PruningPlan:
        path = Path(path)
        return cls.from_dict(read_json(path, "plan"), path)


class PlanError(ValueError):
    """A plan (or its file) that is not a valid pruning plan; the message names the file and the field."""


#: Files a plan or model metadata comes from are small; anything larger is not one.
MAX_JSON_BYTES = 64 * 1024 * 1024


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, or :class:`PlanError` saying why it is not one."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise PlanError(f"{path}: {what} file not found") from None
    except OSError as e:
        raise PlanError(f"{path}: cannot read the {what} file: {e.strerror or e}") from None
    if len(data) > MAX_JSON_BYTES:
        raise PlanError(f"{path}: larger than {MAX_JSON_BYTES >> 20} MiB; not a {what} file")
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise PlanError(f"{path}: not UTF-8 text (byte {e.start}); not a {what} file") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise PlanError(f"{path}: JSON nested too deeply; not a {what} file") from None
    if not isinstance(obj, dict):
        raise PlanError(f"{path}: a {what} file holds a JSON object, not a {type(obj).__name__}")
    return obj


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _field(d: dict, key: str, where: str, check, allowed: str, *, required: bool = True, default=None):
    """``d[key]`` if ``check`` accepts it; a missing optional key gives ``default``."""
    if key not in d:
        if required:
            raise PlanError(f"{where}: {key} is missing (expected {allowed})")
        return default
    value = d[key]
    if not check(value):
        raise PlanError(f"{where}: {key} = {value!r} is not allowed (expected {allowed})")
    return value


def _parse_module(name: str, m, source: str) -> ModulePlan:
    where = f"{source}: modules[{name!r}]"
    if not isinstance(m, dict):
        raise PlanError(f"{where} must be an object, got {m!r}")
    unknown = sorted(set(m) - {"kind", "total", "kept", "params_per_unit", "params_shared"})
    if unknown:
        raise PlanError(f"{where}: unknown field {unknown[0]!r}")
    count = "a non-negative integer"
    kind = _field(m, "kind", where, lambda v: v in KINDS, " or ".join(KINDS))
    total = _field(m, "total", where, lambda v: _is_int(v) and v >= 0, count)
    kept = _field(m, "kept", where, lambda v: isinstance(v, list), "a list of unit indices")
    for i, u in enumerate(kept):
        if not _is_int(u) or not 0 <= u < total:
            raise PlanError(
                f"{where}.kept[{i}] = {u!r} is not a unit index (expected an integer in 0..{total - 1})"
            )
    if len(set(kept)) != len(kept) or kept != sorted(kept):
        raise PlanError(f"{where}.kept must list distinct unit indices in increasing order")
    per_unit = _field(m, "params_per_unit", where, lambda v: _is_int(v) and v >= 0, count)
    shared = _field(m, "params_shared", where, lambda v: _is_int(v) and v >= 0, count)
    return ModulePlan(kind, total, list(kept), per_unit, shared)


def _parse_plan(d, source: str) -> PruningPlan:
    if not isinstance(d, dict):
        raise PlanError(f"{source}: a plan is a JSON object, got {type(d).__name__}")
    if d.get("version") != PLAN_VERSION:
        raise PlanError(
            f"{source}: plan version {d.get('version')!r} is not supported (expected {PLAN_VERSION})"
        )
    modules = _field(
        d, "modules", source, lambda v: isinstance(v, dict) and v, "a non-empty object of unit groups"
    )
    plan = PruningPlan(
        modules={name: _parse_module(name, m, source) for name, m in modules.items()},
        method=_field(d, "method", source, lambda v: isinstance(v, str) and v, "a method name"),
        ratio=_field(
            d,
            "ratio",
            source,
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v < 1.0,
            "a number in [0, 1)",
        ),
        target=_field(d, "target", source, lambda v: v in TARGETS, " or ".join(TARGETS)),
        ranking=_field(d, "ranking", source, lambda v: v in RANKINGS, ", ".join(RANKINGS)),
        architecture=_field(
            d, "architecture", source, lambda v: isinstance(v, str), "a string", required=False, default=""
        ),
        total_params=_field(
            d,
            "total_params",
            source,
            lambda v: v is None or (_is_int(v) and v > 0),
            "a positive integer or null",
            required=False,
        ),
        info=_field(
            d, "info", source, lambda v: isinstance(v, dict), "an object", required=False, default={}
        ),
    )
    if plan.prunable_params <= 0 or plan.units_total <= 0:
        raise PlanError(f"{source}: the plan's modules hold no prunable units or parameters")
    return plan


def _removal_cost(group: UnitGroup, n_removed_before: int, target: str) -> int:
    """Cost (params or units) of removing one more unit from a group that already lost n_removed_before."""
    if target == "units":
        return 1
    return group.params_removed(n_removed_before + 1) - group.params_removed(n_removed_before)


def _remove_lowest_scoring(
    groups: list[UnitGroup], scores: dict[str, torch.Tensor], ratio: float, target: str
) -> dict[str, set]:
    """The units to remove across ``groups``, lowest score first, until ``ratio`` of their params/units go."""
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
        done += _removal_cost(g, len(removed[g.name]), target)
        removed[g.name].add(u)
    return removed


def _check_plan_request(
    groups: list[UnitGroup], scores: dict[str, torch.Tensor], ratio, target, ranking, align
) -> None:
    """Refuse a ratio, target, ranking or alignment that is not allowed, or scores that do not fit the groups."""
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


def _ranking_pools(groups: list[UnitGroup], ranking: str) -> list[list[UnitGroup]]:
    """The groups that compete for one budget: all of them, those of one kind, or each on its own."""
    if ranking == "global":
        return [groups]
    if ranking == "per-kind":
        return [[g for g in groups if g.kind == k] for k in KINDS]
    return [[g] for g in groups]


def _alignment_summary(alignment: list[dict], multiple: int, target: str) -> dict:
    """The pools' :func:`align_ffn_widths` accounting added up, as recorded under ``info["align"]``."""
    return {
        "multiple": multiple,
        "removed_frac_before": sum(a["removed_before"] for a in alignment)
        / sum(a["total"] for a in alignment),
        "removed_frac_after": sum(a["removed_after"] for a in alignment) / sum(a["total"] for a in alignment),
        "of": target,
        **{k: sum(a[k] for a in alignment) for k in ("rounded_up", "rounded_down", "unchanged")},
    }


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
    _check_plan_request(groups, scores, ratio, target, ranking, align)
    removed: dict[str, set] = {}
    alignment = []
    for pool in _ranking_pools(groups, ranking):
        if pool:
            removed.update(_remove_lowest_scoring(pool, scores, ratio, target))
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
        plan.info["align"] = _alignment_summary(alignment, align, target)
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
        removed[g.name] = set(ranking[width[g.name] :])
    rounded_down = sum(width[g.name] == down for _, g, _, down, _ in choices)
    return {
        "total": total,
        "removed_before": before,
        "removed_after": done,
        "rounded_up": len(choices) - rounded_down,
        "rounded_down": rounded_down,
        "unchanged": unchanged,
    }
