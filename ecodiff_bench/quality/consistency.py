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


class ConsistencyVsBase:
    """``update(pruned, base)`` per batch (same seeds and prompts, same order); ``compute()`` gives
    ``ssim_vs_base`` and ``psnr_vs_base`` Values; ``reset()``; ``to(device)``. Both inner metrics are
    torchmetrics Metrics, so sharded processes sync on compute."""

    def __init__(self, **metric_kwargs: Any):
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0, **metric_kwargs)
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, **metric_kwargs)
        self.n = 0

    def to(self, device: str | torch.device) -> ConsistencyVsBase:
        self.ssim.to(device)
        self.psnr.to(device)
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
        dev = self.ssim.device
        self.ssim.update(p.to(dev), b.to(dev))
        self.psnr.update(p.to(dev), b.to(dev))
        self.n += int(pruned.shape[0])

    def reset(self) -> None:
        self.ssim.reset()
        self.psnr.reset()
        self.n = 0

    def compute(self) -> dict[str, Value]:
        if not self.ssim.update_called and rank_world()[1] == 1:
            raise RuntimeError("ssim_vs_base/psnr_vs_base: no image pairs were given")
        ssim = float(self.ssim.compute())
        psnr = float(self.psnr.compute())
        details = {"n_local": self.n, "data_range": 1.0}
        if math.isinf(psnr):  # stores and JSON hold no infinity: say it in words instead
            psnr_value = Value.unavailable(
                "psnr_vs_base", "dB", "infinite: images identical to the base (MSE = 0)", True
            )
        else:
            psnr_value = Value(
                "psnr_vs_base",
                psnr,
                "dB",
                "measured",
                True,
                note="pooled MSE over all pairs",
                details=details,
            )
        return {
            "ssim_vs_base": Value(
                "ssim_vs_base",
                ssim,
                "",
                "measured",
                True,
                note="mean SSIM (Gaussian window 11, sigma 1.5) vs the unpruned model",
                details=details,
            ),
            "psnr_vs_base": psnr_value,
        }
