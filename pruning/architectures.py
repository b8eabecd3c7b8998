"""The denoiser architectures pruning supports, each registered once.

Two tables say everything the library knows about an architecture:

- :data:`BLOCKS`: transformer-block class -> unit discovery (the heads and FFN units of one block, see
  :mod:`.targets`). Blocks are what diffusers' own hooks and caches register; a denoiser's units are the
  units of its blocks.
- :data:`ARCHITECTURES`: for each denoiser class, the name recorded in plans, the pipeline attribute that
  holds it, its block classes, the trajectory adapter of mask training (:mod:`.trajectory`), whether its
  scheduler is flow matching, and its pruned class (:mod:`.pretrained`).

Supporting a new architecture means one discovery function per new block class and one entry here;
nothing else in the library asks which denoiser it has. :func:`prepare_trajectory` dispatches to the
entry's adapter, so :mod:`.trajectory` itself never asks either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import FluxTransformer2DModel, UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock
from torch import nn

from . import trajectory
from .targets import (
    UnitGroup,
    basic_block_units,
    count_costs,
    flux_double_block_units,
    flux_single_block_units,
)

BLOCKS: dict[type, Callable[[nn.Module, str], list[UnitGroup]]] = {
    BasicTransformerBlock: basic_block_units,
    FluxTransformerBlock: flux_double_block_units,
    FluxSingleTransformerBlock: flux_single_block_units,
}


@dataclass(frozen=True)
class Architecture:
    name: str  # recorded in plans and pruned-model metadata
    denoiser_class: type
    attr: str  # the pipeline attribute holding the denoiser
    blocks: tuple[type, ...]
    trajectory: Callable[..., trajectory.Trajectory]
    flow_matching: bool  # rectified-flow schedule (else a noise-prediction DDPM family)
    pruned_class: str  # in pruning.pretrained


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "unet",
        UNet2DConditionModel,
        "unet",
        (BasicTransformerBlock,),
        trajectory.sdxl_trajectory,
        flow_matching=False,
        pruned_class="PrunedUNet2DConditionModel",
    ),
    Architecture(
        "flux",
        FluxTransformer2DModel,
        "transformer",
        (FluxTransformerBlock, FluxSingleTransformerBlock),
        trajectory.flux_trajectory,
        flow_matching=True,
        pruned_class="PrunedFluxTransformer2DModel",
    ),
)
_SUPPORTED = " and ".join(f"{a.denoiser_class.__name__} ({a.name})" for a in ARCHITECTURES)


def architecture_of(denoiser: nn.Module) -> Architecture:
    """The registered architecture of ``denoiser`` (pruned subclasses included)."""
    for arch in ARCHITECTURES:
        if isinstance(denoiser, arch.denoiser_class):
            return arch
    raise TypeError(f"Unsupported denoiser {type(denoiser).__name__}: pruning supports {_SUPPORTED}")


def architecture(denoiser: nn.Module) -> str:
    """'unet' for SDXL-style U-Nets, 'flux' for FLUX-style transformers."""
    return architecture_of(denoiser).name


def denoiser_attr(pipe) -> str:
    """The pipeline attribute that holds its denoiser (``unet`` or ``transformer``)."""
    for arch in ARCHITECTURES:
        if getattr(pipe, arch.attr, None) is not None:
            return arch.attr
    attrs = " nor a ".join(a.attr for a in ARCHITECTURES)
    raise TypeError(f"{type(pipe).__name__} has neither a {attrs}")


def denoiser_of(pipe) -> nn.Module:
    """The pipeline's denoising network."""
    return getattr(pipe, denoiser_attr(pipe))


def architecture_of_pipe(pipe) -> Architecture:
    return architecture_of(denoiser_of(pipe))


def find_groups(denoiser: nn.Module) -> list[UnitGroup]:
    """Every prunable unit group of a denoiser, in module order. Works on the meta device."""
    blocks = {cls: BLOCKS[cls] for cls in architecture_of(denoiser).blocks}
    groups = []
    for path, module in denoiser.named_modules():
        for cls, units in blocks.items():
            if isinstance(module, cls):
                groups += units(module, path)
    if not groups:
        raise ValueError(f"{type(denoiser).__name__} has no prunable attention heads or FFN units")
    return [count_costs(denoiser, g) for g in groups]


def block_params(denoiser: nn.Module) -> int:
    """Parameters inside transformer blocks (the population a pruning ratio refers to in reports)."""
    blocks = architecture_of(denoiser).blocks
    return sum(sum(p.numel() for p in m.parameters()) for m in denoiser.modules() if isinstance(m, blocks))


def prepare_trajectory(
    pipe,
    prompt: str | list[str],
    seed: int,
    *,
    steps: int,
    guidance: float,
    height: int | None = None,
    width: int | None = None,
    max_sequence_length: int = 512,
    memo: dict | None = None,
) -> trajectory.Trajectory:
    """Encode ``prompt``, draw the initial noise from ``seed`` and fix the sigma schedule, as the pipeline does.

    Unrolling the result reproduces ``pipe(prompt, generator=Generator().manual_seed(seed), ...,
    output_type="latent")`` (for FLUX, before unpacking). A ``memo`` dict shared by several calls encodes
    each prompt once (preparing one prompt with many seeds).
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        return architecture_of_pipe(pipe).trajectory(
            pipe, prompt, generator, steps, guidance, height, width, max_sequence_length, memo
        )


def prepare_trajectories(pipe, pairs, sampling: dict) -> list[trajectory.Trajectory]:
    """One trajectory per (prompt, seed) pair with the call settings ``sampling`` (steps, guidance and
    optionally height, width, max_sequence_length); each prompt is encoded once whatever its seeds."""
    memo: dict = {}
    return [
        prepare_trajectory(
            pipe,
            prompt,
            seed,
            steps=sampling["steps"],
            guidance=sampling["guidance"],
            height=sampling.get("height"),
            width=sampling.get("width"),
            max_sequence_length=sampling.get("max_sequence_length", 512),
            memo=memo,
        )
        for prompt, seed in pairs
    ]
