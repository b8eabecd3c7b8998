"""EcoDiff-style structural pruning of text-to-image diffusion models (SDXL U-Nets, FLUX transformers).

Typical use::

    import pruning
    calibration = pruning.pairs(prompts, seeds=range(1000, 1004))   # every prompt with 4 noise seeds
    scores = pruning.score(pipe, "ecodiff", calibration, sampling={"steps": 50, "guidance": 5.0},
                           options={"target_sparsity": 0.2})  # masks trained to remove 20% of the parameters
    plan = pruning.plan(pipe, scores, ratio=0.2)          # 20% of prunable parameters
    pruning.apply(pipe, plan)                             # physically smaller, same pipeline class
    pruning.save(pipe, plan, "out/sdxl-eco20", base="stabilityai/stable-diffusion-xl-base-1.0")
    pipe = pruning.load("out/sdxl-eco20")

``pruning.prune(pipe, method, ratio, prompts, ...)`` does score + plan in one call. This package depends on
torch and diffusers only.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .card import write_card
from .integrity import IntegrityError
from .io import load, load_denoiser, save, verify
from .masks import MaskSet
from .methods import (
    DATA_FREE,
    METHODS,
    RATIO_SPECIFIC,
    EcoDiffConfig,
    TaylorConfig,
    TrainingDiverged,
    ecodiff_plan_summary,
    ecodiff_scores,
    magnitude_scores,
    random_scores,
    taylor_scores,
)
from .plan import RANKINGS, TARGETS, PlanError, PruningPlan, make_plan
from .surgery import apply_plan
from .targets import architecture, block_params, find_groups, prunable_params
from .trajectory import denoiser_of

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


def ratio_specific(method: str, options: dict | None = None) -> bool:
    """Whether ``method``'s scores with these options belong to one pruning ratio (to be cached per ratio).

    EcoDiff's default controlled training learns masks for its target ratio; every other method (and
    EcoDiff with ``controller: none``) scores units once for every ratio (see ``methods.RATIO_SPECIFIC``).
    """
    if method not in RATIO_SPECIFIC:
        return False
    option, serves_every_ratio = RATIO_SPECIFIC[method]
    default = {f.name: f.default for f in dataclasses.fields(EcoDiffConfig)}[option]
    return (options or {}).get(option, default) != serves_every_ratio


def _check_sampling(method: str, sampling: dict | None) -> dict:
    if not sampling or "steps" not in sampling or "guidance" not in sampling:
        raise ValueError(f"method {method!r} needs sampling={{'steps': ..., 'guidance': ...}} (and optionally "
                         "height, width, max_sequence_length)")
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
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; known: {', '.join(METHODS)}")
    options = dict(options or {})
    groups = find_groups(denoiser_of(pipe))
    if method == "magnitude":
        return Scores(method, magnitude_scores(denoiser_of(pipe), groups))
    if method == "random":
        return Scores(method, random_scores(groups, options.get("seed", 0)), {"seed": options.get("seed", 0)})
    if not prompts:
        raise ValueError(f"method {method!r} needs calibration prompts")
    sampling = _check_sampling(method, sampling)
    if method == "ecodiff":
        values, info = ecodiff_scores(pipe, groups, prompts, sampling, EcoDiffConfig(**options), checkpoint_dir)
    else:
        values, info = taylor_scores(pipe, groups, prompts, sampling, TaylorConfig(**options))
    return Scores(method, values, info)


def plan(pipe_or_denoiser, scores: Scores, ratio: float, *, target: str = "params", ranking: str = "global",
         align: int | None = None):
    """Keep the highest-scoring units so that ``ratio`` of the prunable parameters (or units) is removed.

    ``align`` rounds each pruned FFN module's width to a multiple of it (8, 64, 128: GPU tile sizes).
    A plan from EcoDiff scores records the training's target, final expected sparsity, steps, time and the
    agreement of the cut with the gates training closed, under ``info["ecodiff"]``.
    """
    denoiser = pipe_or_denoiser if isinstance(pipe_or_denoiser, torch.nn.Module) else denoiser_of(pipe_or_denoiser)
    groups = find_groups(denoiser)
    total = sum(p.numel() for p in denoiser.parameters())
    info = {"block_params": block_params(denoiser)}
    result = make_plan(groups, scores.values, ratio, method=scores.method, target=target, ranking=ranking,
                       architecture=architecture(denoiser), total_params=total, info=info, align=align)
    if scores.method == "ecodiff":
        result.info["ecodiff"] = summary = ecodiff_plan_summary(result, scores.values, scores.info)
        trained = summary["trained_target"]
        if trained is not None and abs(trained - ratio) > 1e-9:
            warnings.warn(f"EcoDiff masks trained to remove {trained:.0%} are cut at {ratio:.0%}: the cut will not "
                          f"follow the closed gates (agreement {summary['agreement']:.2f}); train with "
                          f"target_sparsity={ratio}", stacklevel=2)
    return result


def prune(pipe, method: str, ratio: float, prompts: list[str] | None = None, *, target: str = "params",
          ranking: str = "global", align: int | None = None, **score_kwargs) -> PruningPlan:
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


_LAZY = {"PrunedUNet2DConditionModel", "PrunedFluxTransformer2DModel", "PrunedModelMixin"}


def __getattr__(name: str):
    """The pruned model classes, imported on first use (they pull in diffusers' model code).

    ``ModelMixin`` is here for diffusers: to find a component's loading method it looks up its base classes
    by name in the module that ``model_index.json`` names, which for the pruned classes is ``pruning``.
    """
    if name in _LAZY:
        from . import pretrained

        return getattr(pretrained, name)
    if name == "ModelMixin":
        from diffusers import ModelMixin

        return ModelMixin
    raise AttributeError(f"module 'pruning' has no attribute {name!r}")


__all__ = [
    "Scores", "score", "plan", "prune", "apply", "save", "load", "load_denoiser", "verify", "write_card",
    "IntegrityError", "PrunedUNet2DConditionModel", "PrunedFluxTransformer2DModel", "PruningPlan", "PlanError",
    "MaskSet",
    "make_plan", "apply_plan", "find_groups", "prunable_params", "block_params", "architecture", "denoiser_of",
    "METHODS", "DATA_FREE", "RANKINGS", "TARGETS", "EcoDiffConfig", "TaylorConfig", "TrainingDiverged",
    "pairs", "ratio_specific",
]
