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

``pruning.prune(pipe, method, ratio, prompts, ...)`` does score + plan in one call;
``pruning.recover(pruned_pipe, base_denoiser, calibration, sampling)`` distils a pruned model toward the
unpruned one (LoRA merged afterwards, or full fine-tuning). This package depends on
torch and diffusers only, and importing it imports neither: the torch-bound names load on
first use, so that the method registry (:mod:`pruning.registry`) and the settings (:mod:`pruning.config`)
can be read cheaply.
"""

from __future__ import annotations

import importlib

from .config import RANKINGS, TARGETS, EcoDiffConfig, RecoveryConfig, TaylorConfig
from .registry import DATA_FREE, METHODS, Method, ratio_specific

# public name -> the submodule defining it, imported on first access
_LAZY = {
    **dict.fromkeys(("Scores", "pairs", "score", "plan", "prune", "apply", "SAMPLING_KEYS"), "api"),
    **dict.fromkeys(("load", "load_denoiser", "save", "verify"), "io"),
    **dict.fromkeys(
        ("architecture", "architecture_of", "block_params", "denoiser_of", "find_groups", "ARCHITECTURES"),
        "architectures",
    ),
    **dict.fromkeys(
        ("PrunedUNet2DConditionModel", "PrunedFluxTransformer2DModel", "PrunedModelMixin"), "pretrained"
    ),
    **dict.fromkeys(("magnitude_scores", "random_scores"), "methods.simple"),
    "write_card": "card",
    "IntegrityError": "integrity",
    "MaskSet": "masks",
    "PruningPlan": "plans",
    "make_plan": "plans",
    "PlanError": "plans",
    "apply_plan": "surgery",
    "prunable_params": "targets",
    "TrainingDiverged": "methods.mask_training",
    **dict.fromkeys(("recover", "RecoveryDiverged"), "recovery"),
}


def __getattr__(name: str):
    """Torch-bound names and submodules, imported on first use.

    ``ModelMixin`` is here for diffusers: to find a component's loading method it looks up its base classes
    by name in the module that ``model_index.json`` names, which for the pruned classes is ``pruning``.
    """
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name == "ModelMixin":
        from diffusers import ModelMixin as value
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'pruning' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "RANKINGS",
    "TARGETS",
    "EcoDiffConfig",
    "RecoveryConfig",
    "TaylorConfig",
    "DATA_FREE",
    "METHODS",
    "Method",
    "ratio_specific",
    *_LAZY,
]
