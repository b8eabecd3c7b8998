"""The pruning library's settings, importable without torch: method configs and the allowed values of options.

Everything a caller can set lives here, once: the harness builds its suite options from these dataclasses
and constants (validating a suite must not pay for importing torch), and the torch code imports them from
here. Defaults and their reasons are documented beside each method's algorithm (``pruning.methods``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Plans (pruning.plans)
RANKINGS = ("global", "per-kind", "per-layer")
TARGETS = ("params", "units")
# Masks (pruning.masks) and how their expected sparsity is weighted (pruning.methods.sparsity)
PARAMETRIZATIONS = ("hard-concrete", "sigmoid", "binary")
PENALTIES = ("params", "units", "layer-mean")
CONTROLLERS = ("lagrangian", "none")
# Inference options (pruning.inference)
ATTENTION = ("sdpa", "math")
CHANNELS_LAST = ("auto", "on", "off")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _one_of(method: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{method} {name} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least_one(method: str, config, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{method} {name} must be >= 1; got {getattr(config, name)!r}")


@dataclass
class EcoDiffConfig:
    """Mask-training settings (see :mod:`pruning.methods.ecodiff` for the defaults' reasons)."""

    target_sparsity: float | None = (
        None  # share of prunable parameters to remove (the ratio); lagrangian only
    )
    # "none": the paper's fixed penalty, beta_reg x the expected kept share
    controller: Literal["lagrangian", "none"] = "lagrangian"
    steps: int | None = None  # optimizer steps; None: `epochs` passes over the calibration samples
    epochs: int = 4
    batch: int = 1  # calibration samples run together as one batched trajectory
    accumulate: int = 4  # batches per optimizer step
    lr: float = 0.1
    lr_heads: float | None = None  # defaults to lr (the official FLUX setting uses 0.5 for heads)
    weight_decay: float = 0.0  # AdamW's decoupled decay of the logits (official: 0.01)
    normalize_mse: bool = True  # divide each sample's MSE by its reference latent's variance
    penalty: Literal["params", "units", "layer-mean"] = "params"  # weighting of the expected sparsity
    beta_reg: float = 0.5  # weight of the fixed penalty (controller "none")
    dual_lr: float = 0.3  # learning rate of the Lagrange multipliers
    warmup: float = 0.4  # share of the steps over which the target ramps up from 0
    noise_bound: float | None = None  # bound of the logistic mask noise in logit units (official: ~1.1 / 2.4)
    parametrization: Literal["hard-concrete", "sigmoid", "binary"] = "hard-concrete"
    checkpointing: bool = True
    seed: int = 0  # mask noise and sample order (and the seeds of calibration prompts given without one)
    max_normalized_mse: float = 10.0  # MSE / Var(reference) above this counts as divergence
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        _one_of("ecodiff", "controller", self.controller, CONTROLLERS)
        _one_of("ecodiff", "penalty", self.penalty, PENALTIES)
        _one_of("ecodiff", "parametrization", self.parametrization, PARAMETRIZATIONS)
        if self.controller == "lagrangian":
            if self.target_sparsity is None:
                raise ValueError(
                    "ecodiff with controller 'lagrangian' needs target_sparsity= (the share of prunable "
                    "parameters to remove, the plan's ratio); controller 'none' trains without one"
                )
            if not 0.0 < self.target_sparsity < 1.0:
                raise ValueError(f"ecodiff target_sparsity must lie in (0, 1); got {self.target_sparsity!r}")
        _at_least_one("ecodiff", self, "batch", "accumulate", "epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"ecodiff steps must be >= 1 or None; got {self.steps!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"ecodiff warmup must lie in [0, 1); got {self.warmup!r}")


@dataclass
class TaylorConfig:
    """Diff-Pruning settings (see :mod:`pruning.methods.taylor`)."""

    threshold: float = 0.05
    batch: int = 4  # calibration images: one batch of the model's own samples, as the paper's one real batch
    timestep_stride: int = 10  # visit every k-th training timestep (1 = every one, as in the paper)
    max_timesteps: int = 1000
    seed: int = 0
    progress: bool = True


@dataclass
class RandomConfig:
    seed: int = 0


@dataclass
class MagnitudeConfig:
    """Weight magnitude has no settings."""


# Recovery after pruning (pruning.recovery)
RECOVERY_MODES = ("lora", "full")
RECOVERY_OBJECTIVES = ("timesteps", "final-latent", "both")
# Where LoRA adapters go, by the name of a linear inside the denoiser (regular expressions).
LORA_MODULES = {
    "blocks": r"transformer_blocks\.\d+\.",  # every linear of every transformer block (AdaLN included)
    "attention": r"transformer_blocks\.\d+\.attn\d?\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)$",
    "ffn": r"transformer_blocks\.\d+\.(ff(_context)?\.net\.(0\.proj|2)|proj_mlp|proj_out)$",
}
RECOVERY_DEFAULT_LR = {"lora": 1e-3, "full": 1e-4}


@dataclass
class RecoveryConfig:
    """Distillation settings (see :mod:`pruning.recovery` for the objectives)."""

    mode: Literal["lora", "full"] = "lora"
    steps: int = 200  # optimizer steps
    lr: float | None = None  # AdamW learning rate; defaults to RECOVERY_DEFAULT_LR[mode]
    batch: int = 8  # (sample, step) points per optimizer step (timesteps objective)
    final_samples: int = 1  # trajectories per optimizer step (final-latent objective)
    rank: int = 8  # LoRA rank
    alpha: float | None = None  # LoRA scale numerator; defaults to rank (scale 1)
    modules: Literal["blocks", "attention", "ffn"] = "blocks"  # where LoRA adapters go
    objective: Literal["timesteps", "final-latent", "both"] = "timesteps"
    final_weight: float = 1.0  # weight of the final-latent term in "both"
    checkpointing: bool = True  # time-step checkpointing for the final-latent objective
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max gradient norm (None: no clipping)
    seed: int = 0
    checkpoint_every: int = 25
    max_loss: float = 10.0  # normalized loss above this counts as divergence
    progress: bool = True

    def __post_init__(self):
        _one_of("recovery", "mode", self.mode, RECOVERY_MODES)
        _one_of("recovery", "objective", self.objective, RECOVERY_OBJECTIVES)
        _one_of("recovery", "modules", self.modules, tuple(LORA_MODULES))
        for name in ("steps", "batch", "final_samples", "rank", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"recovery {name} must be a positive integer; got {value!r}")
        if self.lr is None:
            self.lr = RECOVERY_DEFAULT_LR[self.mode]
        if not self.lr > 0:
            raise ValueError(f"recovery lr must be positive; got {self.lr!r}")
