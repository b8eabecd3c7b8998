"""SSIM/PSNR between pruned and base images."""

from __future__ import annotations

import math

import pytest
import torch

from ecodiff_bench.quality.consistency import ConsistencyVsBase


def imgs(seed, n=4, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_identical_images():
    c = ConsistencyVsBase()
    x = imgs(0)
    c.update(x, x.clone())
    out = c.compute()
    assert out["ssim_vs_base"].value == pytest.approx(1.0, abs=1e-6)
    assert out["ssim_vs_base"].higher_is_better is True
    # infinite PSNR is not stored as a number (JSON has no infinity): unavailable, saying why
    assert out["psnr_vs_base"].status == "unavailable" and "identical" in out["psnr_vs_base"].note


def test_psnr_matches_definition_and_uint8_is_accepted():
    c = ConsistencyVsBase()
    a, b = imgs(1), imgs(2)
    c.update((a * 255).round().to(torch.uint8), (b * 255).round().to(torch.uint8))
    out = c.compute()
    a8, b8 = (a * 255).round() / 255, (b * 255).round() / 255
    mse = float(((a8 - b8) ** 2).mean())
    assert out["psnr_vs_base"].value == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    assert out["psnr_vs_base"].unit == "dB"
    assert abs(out["ssim_vs_base"].value) < 0.2  # unrelated noise
    c.reset()
    c.update(a, a * 0.9)
    assert c.compute()["ssim_vs_base"].value > 0.9


def test_shape_errors():
    c = ConsistencyVsBase()
    with pytest.raises(ValueError, match="shapes differ"):
        c.update(imgs(0), imgs(0, n=3))
    with pytest.raises(ValueError, match="at least 11x11"):
        c.update(imgs(0, size=8), imgs(0, size=8))
    with pytest.raises(RuntimeError, match="no image pairs"):
        ConsistencyVsBase().compute()
