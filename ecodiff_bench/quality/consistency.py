"""Consistency with the unpruned model: SSIM and PSNR (torchmetrics) between pruned and base images
generated from identical seeds and prompts.

SSIM: torchmetrics' Gaussian-window SSIM (11 px, sigma 1.5; images must be at least 11 px a side),
averaged over images. PSNR: over the pooled squared error of all image pairs (torchmetrics' default
reduction), data range 1 on [0, 1] images. Identical images give PSNR = inf (said in the note).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ecodiff_bench.core.values import Value
from ecodiff_bench.quality._images import check_images, to_float01
from ecodiff_bench.quality.distributed import rank_world

__all__ = ["ConsistencyVsBase"]

METRICS = ("ssim_vs_base", "psnr_vs_base")


class ConsistencyVsBase:
    """``update(pruned, base)`` per batch (same seeds and prompts, same order); ``compute()`` gives the
    ``metrics`` asked for (``ssim_vs_base``, ``psnr_vs_base``: both by default) as Values; ``reset()``;
    ``to(device)``. The inner metrics are torchmetrics Metrics, so sharded processes sync on compute."""

    def __init__(self, metrics: tuple[str, ...] = METRICS, **metric_kwargs: Any):
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"metrics: expected some of {METRICS}, got {metrics!r}")
        kinds = {"ssim_vs_base": StructuralSimilarityIndexMeasure, "psnr_vs_base": PeakSignalNoiseRatio}
        self.inner = {m: kinds[m](data_range=1.0, **metric_kwargs) for m in METRICS if m in metrics}
        self.n = 0

    def to(self, device: str | torch.device) -> ConsistencyVsBase:
        for inner in self.inner.values():
            inner.to(device)
        return self

    def update(self, pruned: Tensor, base: Tensor) -> None:
        check_images(pruned, "pruned")
        check_images(base, "base")
        if pruned.shape != base.shape:
            raise ValueError(
                f"pruned/base: shapes differ ({tuple(pruned.shape)} vs {tuple(base.shape)}); "
                "compare images from identical seeds, prompts and resolution"
            )
        if min(pruned.shape[-2:]) < 11:
            raise ValueError(
                f"pruned/base: SSIM's 11-pixel window needs images of at least 11x11, got "
                f"{tuple(pruned.shape[-2:])}; upsample first"
            )
        p, b = to_float01(pruned), to_float01(base)
        for inner in self.inner.values():
            inner.update(p.to(inner.device), b.to(inner.device))
        self.n += int(pruned.shape[0])

    def reset(self) -> None:
        for inner in self.inner.values():
            inner.reset()
        self.n = 0

    def compute(self) -> dict[str, Value]:
        first = next(iter(self.inner.values()))
        if not first.update_called and rank_world()[1] == 1:
            raise RuntimeError(f"{'/'.join(self.inner)}: no image pairs were given")
        details = {"n_local": self.n, "data_range": 1.0}
        out = {}
        if "ssim_vs_base" in self.inner:
            out["ssim_vs_base"] = Value.of(
                "ssim_vs_base",
                float(self.inner["ssim_vs_base"].compute()),
                note="mean SSIM (Gaussian window 11, sigma 1.5) vs the unpruned model",
                details=details,
            )
        if "psnr_vs_base" in self.inner:
            out["psnr_vs_base"] = _psnr(float(self.inner["psnr_vs_base"].compute()), details)
        return out


def _psnr(psnr: float, details: dict) -> Value:
    if math.isinf(psnr):  # stores and JSON hold no infinity: say it in words instead
        return Value.unavailable_of("psnr_vs_base", "infinite: images identical to the base (MSE = 0)")
    return Value.of("psnr_vs_base", psnr, note="pooled MSE over all pairs", details=details)
