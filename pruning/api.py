"""The library's entry points: score units with a method, plan a cut, apply it.

Imported on first use of any of them (``import pruning`` itself does not import torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .architectures import architecture, block_params, denoiser_of, find_groups
from .plans import PruningPlan, make_plan
from .registry import METHODS, ratio_specific
from .registry import method as registered_method
from .surgery import apply_plan

SAMPLING_KEYS = ("steps", "guidance", "height", "width", "max_sequence_length")


@dataclass
class Scores:
    """Unit importances from one method (higher = keep), with what the method logged while scoring."""

    method: str
    values: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)


def pairs(prompts: list[str], seeds) -> list[tuple[str, int]]:
    """Every prompt with every seed: the (prompt, seed) calibration samples of :func:`score`.

    Seed-major (every prompt with the first seed, then with the next), so that a prefix covers the prompts.
    """
    return [(p, int(s)) for s in seeds for p in prompts]


def _check_sampling(method: str, sampling: dict | None) -> dict:
    if not sampling or "steps" not in sampling or "guidance" not in sampling:
        raise ValueError(
            f"method {method!r} needs sampling={{'steps': ..., 'guidance': ...}} (and optionally "
            "height, width, max_sequence_length)"
        )
    unknown = set(sampling) - set(SAMPLING_KEYS)
    if unknown:
        raise ValueError(f"unknown sampling keys {sorted(unknown)}; allowed: {', '.join(SAMPLING_KEYS)}")
    return sampling


def score(
    pipe,
    method: str,
    prompts: list[str] | list[tuple[str, int]] | None = None,
    *,
    sampling: dict | None = None,
    options: dict | None = None,
    checkpoint_dir: str | Path | None = None,
) -> Scores:
    """Score every attention head and FFN unit of ``pipe``'s denoiser with ``method``.

    ``prompts`` calibrates the data-driven methods: prompt strings, or (prompt, seed) pairs (see
    :func:`pairs`) so that each prompt can come with several initial noises. EcoDiff's default controller
    needs ``options={"target_sparsity": ratio}``; :func:`prune` passes its ratio.
    """
    entry = registered_method(method)
    config = entry.make_config(options)
    groups = find_groups(denoiser_of(pipe))
    if entry.needs_calibration:
        if not prompts:
            raise ValueError(f"method {method!r} needs calibration prompts")
        sampling = _check_sampling(method, sampling)
    values, info = entry.score_function()(pipe, groups, prompts, sampling, config, checkpoint_dir)
    return Scores(method, values, info)


def plan(
    pipe_or_denoiser,
    scores: Scores,
    ratio: float,
    *,
    target: str = "params",
    ranking: str = "global",
    align: int | None = None,
):
    """Keep the highest-scoring units so that ``ratio`` of the prunable parameters (or units) is removed.

    ``align`` rounds each pruned FFN module's width to a multiple of it (8, 64, 128: GPU tile sizes).
    The scores' method may add to the plan's ``info`` (its plan annotator in :mod:`pruning.registry`; EcoDiff
    records its training's target and the cut's agreement with the closed gates under ``info["ecodiff"]``).
    """
    denoiser = (
        pipe_or_denoiser if isinstance(pipe_or_denoiser, torch.nn.Module) else denoiser_of(pipe_or_denoiser)
    )
    groups = find_groups(denoiser)
    total = sum(p.numel() for p in denoiser.parameters())
    info = {"block_params": block_params(denoiser)}
    result = make_plan(
        groups,
        scores.values,
        ratio,
        method=scores.method,
        target=target,
        ranking=ranking,
        architecture=architecture(denoiser),
        total_params=total,
        info=info,
        align=align,
    )
    if scores.method in METHODS:  # scores may also come from elsewhere, under a name of their own
        METHODS[scores.method].annotate_plan(result, scores.values, scores.info)
    return result


def prune(
    pipe,
    method: str,
    ratio: float,
    prompts: list[str] | None = None,
    *,
    target: str = "params",
    ranking: str = "global",
    align: int | None = None,
    **score_kwargs,
) -> PruningPlan:
    """Score with ``method`` and return the plan for ``ratio`` (apply it with :func:`apply`).

    Ratio-specific training (EcoDiff's default controller) gets ``ratio`` as its target unless the options
    set one.
    """
    options = dict(score_kwargs.pop("options", None) or {})
    if ratio_specific(method, options):
        options.setdefault("target_sparsity", ratio)
    scores = score(pipe, method, prompts, options=options, **score_kwargs)
    return plan(pipe, scores, ratio, target=target, ranking=ranking, align=align)


def apply(pipe, plan: PruningPlan):
    """Physically remove the plan's pruned units from ``pipe``'s denoiser (in place); returns ``pipe``.

    The denoiser becomes a pruned class (``PrunedUNet2DConditionModel``, ``PrunedFluxTransformer2DModel``)
    whose config records the kept units, so ``pipe.save_pretrained`` writes a directory that stock
    ``DiffusionPipeline.from_pretrained`` loads again.
    """
    from .pretrained import adopt

    apply_plan(denoiser_of(pipe), plan)
    adopt(pipe, plan)
    return pipe
