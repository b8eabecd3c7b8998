"""A method's ``recovery`` section: a short distillation of each pruned model toward its unpruned model.

Off unless a method entry has it (``recovery: {}`` turns it on with pruning's defaults). Its options are
generated from ``pruning.config.RecoveryConfig`` like a method's from its config dataclass (torch-free,
so validating a suite imports no torch); this module adds bounds, help and the fields the harness sets
itself. Every pruned (ratio, seed) of the method then gets a second, recovered variant: its own
record, method ``<method>+recovery``, beside the unrecovered one. Recovery trains on the suite's
calibration prompts (and their seeds), whatever the method, never on the evaluation's.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import Field, create_model

from ecodiff_bench.suite.problems import StrictModel
from pruning.config import RECOVERY_DEFAULT_LR, RecoveryConfig

#: What a recovered record's method is called: ``taylor+recovery``.
SUFFIX = "+recovery"

#: Config fields that are not suite options, and why.
NOT_OPTIONS = {
    "seed": "set from the method's `seeds`",
    "progress": "the runner's progress display",
    "max_loss": "a divergence guard, not a tuning knob",
}

_RULES: dict[str, dict[str, Any]] = {
    "mode": {"description": "lora: adapters merged afterwards; full: every weight"},
    "steps": {"gt": 0, "description": "optimizer steps"},
    "lr": {"gt": 0, "description": "AdamW learning rate (default: 1e-3 lora, 1e-4 full)"},
    "batch": {"gt": 0, "description": "(sample, timestep) points per optimizer step"},
    "final_samples": {"gt": 0, "description": "trajectories per step for the final-latent objective"},
    "rank": {"gt": 0, "description": "LoRA rank"},
    "alpha": {"gt": 0, "description": "LoRA alpha (default: rank)"},
    "modules": {"description": "where LoRA adapters go"},
    "objective": {"description": "teacher predictions at sampled timesteps, EcoDiff's final latent, or both"},
    "final_weight": {"ge": 0},
    "weight_decay": {"ge": 0},
    "grad_clip": {"gt": 0},
    "checkpoint_every": {"gt": 0, "description": "optimizer steps between resumable checkpoints"},
}


def _fields() -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(RecoveryConfig)
    fields = {}
    for f in dataclasses.fields(RecoveryConfig):
        if f.name not in NOT_OPTIONS:
            fields[f.name] = (hints[f.name], Field(f.default, **_RULES.get(f.name, {})))
    unknown = set(_RULES) - set(fields)
    if unknown:  # pragma: no cover - a renamed field in pruning
        raise TypeError(f"recovery rules for {sorted(unknown)}, which RecoveryConfig does not have")
    return fields


RecoveryOptions = create_model("RecoveryOptions", __base__=StrictModel, **_fields())
RecoveryOptions.__doc__ = "Options of a method's recovery section (from pruning.config.RecoveryConfig)."


def recovered_method(method: str) -> str:
    """The method name of a recovered variant's record."""
    return method + SUFFIX


def resolved(options: RecoveryOptions) -> dict[str, Any]:
    """The section's options with the mode's default learning rate filled in (so record ids see it)."""
    opts = options.model_dump(mode="json")
    if opts["lr"] is None:
        opts["lr"] = RECOVERY_DEFAULT_LR[opts["mode"]]
    return opts


def config_kwargs(options: dict[str, Any], seed: int) -> dict[str, Any]:
    """Resolved recovery options -> ``pruning.RecoveryConfig`` keyword arguments."""
    return {**options, "seed": seed}


def shrink_for_smoke(options: dict[str, Any], steps: int) -> None:
    """Cap the optimizer steps for ``--smoke``, in place."""
    options["steps"] = min(options["steps"], steps)
    options["checkpoint_every"] = min(options["checkpoint_every"], options["steps"])
