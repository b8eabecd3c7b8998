"""Physical removal of pruned units: smaller linears, and constants for modules with no unit left.

Producers lose the output rows of removed units (every GEGLU half, FLUX's add_q/k/v included); consumers
lose the matching input columns. A consumer shared by several groups (FLUX single-block ``proj_out``)
is sliced once, from the union of what every group keeps. Attention modules get their head counts
updated so stock processors reshape correctly. A container whose units are all gone becomes a
:class:`~pruning.targets.ConstantModule` holding its exact output (its output bias), not an identity.
Works on real and on meta tensors (for counting).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .architectures import find_groups
from .plans import PruningPlan
from .targets import ConstantModule, UnitGroup


def _unit_indices(keep: list[int], width: int, offset: int) -> torch.Tensor:
    """Row/column indices of the kept units, each unit spanning ``width`` consecutive indices."""
    base = torch.tensor(keep, dtype=torch.long, device="cpu").unsqueeze(1) * width + offset
    return (base + torch.arange(width, device="cpu")).reshape(-1)


def _sliced_linear(old: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    weight = old.weight
    if rows is not None:
        weight = weight.index_select(0, rows.to(weight.device))
    if cols is not None:
        weight = weight.index_select(1, cols.to(weight.device))
    bias = old.bias
    if bias is not None and rows is not None:
        bias = bias.index_select(0, rows.to(bias.device))
    with warnings.catch_warnings():  # a fully pruned producer legitimately has zero rows
        warnings.simplefilter("ignore", UserWarning)
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    new.weight = nn.Parameter(weight.detach().clone(), requires_grad=old.weight.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias.detach().clone(), requires_grad=old.bias.requires_grad)
    return new


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _check_plan(groups: dict[str, UnitGroup], plan: PruningPlan) -> None:
    unknown = sorted(set(plan.modules) - set(groups))
    if unknown:
        raise ValueError(
            f"plan names {len(unknown)} unit groups this model does not have, e.g. {unknown[0]!r}"
        )
    for name, mp in plan.modules.items():
        g = groups[name]
        if mp.total != g.n_units:
            raise ValueError(f"{name}: plan expects {mp.total} units, the model has {g.n_units}")
        bad = [u for u in mp.kept if not 0 <= u < g.n_units]
        if bad or len(set(mp.kept)) != len(mp.kept):
            raise ValueError(
                f"{name}: invalid kept indices {bad or 'duplicates'} (valid: 0..{g.n_units - 1})"
            )


def _kept(plan: PruningPlan, group: UnitGroup) -> list[int]:
    """Kept units of a group; a group the plan does not mention keeps everything."""
    mp = plan.modules.get(group.name)
    return mp.kept if mp is not None else list(range(group.n_units))


def _constant_for(denoiser: nn.Module, group: UnitGroup) -> ConstantModule:
    """The exact output of ``group.container`` once every unit is gone."""

    def bias_of(path: str) -> torch.Tensor:
        lin = denoiser.get_submodule(path)
        return (
            lin.bias.detach()
            if lin.bias is not None
            else torch.zeros(lin.out_features, device=lin.weight.device)
        )

    container = denoiser.get_submodule(group.container)
    if group.kind == "ffn":
        return ConstantModule([bias_of(group.consumers[0].path)], ["hidden_states"], tuple_output=False)
    if len(group.consumers) == 2:  # FLUX joint attention: image stream and text stream
        outs = [bias_of(c.path) for c in group.consumers]
        return ConstantModule(outs, ["hidden_states", "encoder_hidden_states"], tuple_output=True)
    consumer = group.consumers[0]
    if not consumer.path.startswith(group.container + "."):  # FLUX single block: columns live in proj_out
        empty = torch.zeros(0, device=container.to_q.weight.device)
        return ConstantModule([empty], ["hidden_states"], tuple_output=False)
    if getattr(container, "residual_connection", False):
        raise NotImplementedError(
            f"{group.container}: attention with a residual connection cannot be removed"
        )
    const = bias_of(consumer.path) / getattr(container, "rescale_output_factor", 1.0)
    return ConstantModule([const], ["hidden_states"], tuple_output=False)


def apply_plan(denoiser: nn.Module, plan: PruningPlan) -> nn.Module:
    """Remove the plan's pruned units from ``denoiser`` in place and return it."""
    groups = {g.name: g for g in find_groups(denoiser)}
    _check_plan(groups, plan)
    live = [groups[n] for n, mp in plan.modules.items() if mp.n_removed > 0]

    # Slice every consumer once, with the kept columns of all groups that feed it.
    consumer_cols: dict[str, list[tuple[int, UnitGroup]]] = {}
    for g in live:
        for c in g.consumers:
            consumer_cols.setdefault(c.path, [])
    for g in groups.values():
        for c in g.consumers:
            if c.path in consumer_cols:
                consumer_cols[c.path].append((c.offset, g))
    for path, feeds in consumer_cols.items():
        old = denoiser.get_submodule(path)
        keep_cols = torch.ones(old.in_features, dtype=torch.bool, device="cpu")  # index bookkeeping stays on
        for offset, g in feeds:  # the CPU, also inside a `with torch.device("meta")` build
            span = torch.arange(offset, offset + g.n_units * g.width, device="cpu")
            keep_cols[span] = False
            keep_cols[_unit_indices(_kept(plan, g), g.width, offset)] = True
        _set(denoiser, path, _sliced_linear(old, None, keep_cols.nonzero().squeeze(1)))

    for g in live:
        kept = plan.modules[g.name].kept
        if not kept and g.container is not None:
            _set(denoiser, g.container, _constant_for(denoiser, g))
            continue
        for prod in g.producers:
            old = denoiser.get_submodule(prod.path)
            rows = torch.cat([_unit_indices(kept, g.width, off) for off in prod.offsets])
            _set(denoiser, prod.path, _sliced_linear(old, rows, None))
        if g.kind == "heads":
            attn = denoiser.get_submodule(g.module)
            attn.heads = len(kept)
            attn.inner_dim = len(kept) * g.width
    return denoiser
