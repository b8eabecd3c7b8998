"""Image conventions shared by the quality metrics: (N, 3, H, W), uint8 in [0, 255] or float in [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor


def check_images(imgs: Tensor, arg: str = "images") -> Tensor:
    if not isinstance(imgs, Tensor):
        raise TypeError(f"{arg}: expected a torch.Tensor of shape (N, 3, H, W), got {type(imgs).__name__}")
    if imgs.ndim != 4 or imgs.shape[1] != 3:
        raise ValueError(f"{arg}: expected shape (N, 3, H, W), got {tuple(imgs.shape)}")
    if imgs.dtype != torch.uint8 and not imgs.is_floating_point():
        raise TypeError(f"{arg}: expected uint8 in [0, 255] or float in [0, 1], got {imgs.dtype}")
    return imgs


def to_uint8(imgs: Tensor) -> Tensor:
    """uint8 as is; floats in [0, 1] scaled, rounded and clamped (as saving a PNG would)."""
    if imgs.dtype == torch.uint8:
        return imgs
    if not imgs.is_floating_point():
        raise TypeError(f"images: expected uint8 or floating point, got {imgs.dtype}")
    return (imgs * 255.0).round().clamp(0, 255).to(torch.uint8)


def to_float01(imgs: Tensor) -> Tensor:
    """float32 in [0, 1]."""
    if imgs.dtype == torch.uint8:
        return imgs.float() / 255.0
    return imgs.float()
