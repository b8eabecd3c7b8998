"""scikit-learn's bundled handwritten digits, prepared for the zoo.

Images: the 1,797 8x8 digits of ``sklearn.datasets.load_digits`` (values 0..16, 16 = ink), upsampled
bilinearly to 16x16, replicated to 3 channels (RGB), scaled to [-1, 1] (-1 = black background,
+1 = white ink, as in the source data). [-1, 1] is the range diffusers VAEs and pipelines work in;
``to_pil`` maps back to 8-bit images.

Split: a FIXED stratified split. Within each class the sample indices are ordered by a seeded hash
(sha256 of ``"<seed>:<index>"``), which is stable across numpy / scikit-learn versions, and the first
``HELDOUT_FRACTION`` of each class is held out. Held-out images are never used for training any zoo
model; they serve as the real reference for quality metrics.

Prompts: ``prompt_for(d)`` gives the canonical prompt ``"a handwritten digit seven"``; ``captions_for(d)``
gives a few variants used when training the text-conditioned models and digits-clip.

Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

DIGIT_NAMES: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
PROMPT_TEMPLATE = "a handwritten digit {name}"
PROMPTS: tuple[str, ...] = tuple(PROMPT_TEMPLATE.format(name=n) for n in DIGIT_NAMES)

# Caption variants: {name} is the English word, {num} the numeral. The first is the canonical prompt.
CAPTION_TEMPLATES: tuple[str, ...] = (
    PROMPT_TEMPLATE,
    "the digit {name}",
    "the number {name}",
    "a handwritten {name}",
    "a drawing of the number {name}",
    "a handwritten digit {num}",
    "the number {num}",
    "{name}",
)

IMAGE_SIZE = 16
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0
NUM_CLASSES = 10


def prompt_for(digit: int) -> str:
    """Canonical prompt for a digit 0..9, e.g. ``prompt_for(7) == "a handwritten digit seven"``."""
    if not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be in 0..9, got {digit!r}")
    return PROMPTS[int(digit)]


def captions_for(digit: int) -> list[str]:
    """All caption variants for a digit (the canonical prompt first)."""
    name = DIGIT_NAMES[int(digit)]
    return [t.format(name=name, num=int(digit)) for t in CAPTION_TEMPLATES]


def all_captions() -> list[tuple[str, int]]:
    """(caption, digit) for every variant of every digit."""
    return [(c, d) for d in range(NUM_CLASSES) for c in captions_for(d)]


def digit_from_prompt(prompt: str) -> int | None:
    """The digit a prompt names (word or numeral), or None when it names none or several."""
    words = prompt.lower().replace(",", " ").replace(".", " ").split()
    found = {i for i, n in enumerate(DIGIT_NAMES) if n in words}
    found |= {int(w) for w in words if w.isdigit() and len(w) == 1}
    return found.pop() if len(found) == 1 else None


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def _hash_key(seed: int, index: int) -> str:
    return hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()


@lru_cache(maxsize=4)
def split_indices(seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, heldout_indices) into ``load_digits()``; stratified, sorted, disjoint."""
    _, labels = _raw()
    train, held = [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c).tolist()
        idx.sort(key=lambda i: _hash_key(seed, i))
        n_held = int(round(HELDOUT_FRACTION * len(idx)))
        held.extend(idx[:n_held])
        train.extend(idx[n_held:])
    tr, he = np.array(sorted(train), dtype=np.int64), np.array(sorted(held), dtype=np.int64)
    tr.flags.writeable = False
    he.flags.writeable = False
    return tr, he


def _upsample(images8: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling (half-pixel centres, edges clamped) of N x 8 x 8 arrays, in numpy."""
    n, h, w = images8.shape
    if size == h:
        return images8.copy()

    def weights(src: int, dst: int) -> np.ndarray:
        pos = (np.arange(dst) + 0.5) * src / dst - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        frac = pos - lo
        m = np.zeros((dst, src), dtype=np.float32)
        m[np.arange(dst), lo] += 1 - frac
        m[np.arange(dst), hi] += frac
        return m

    wy, wx = weights(h, size), weights(w, size)
    return np.einsum("yh,nhw,xw->nyx", wy, images8, wx).astype(np.float32)


def digits_arrays(split: str = "train", size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, size, size) float32 in [-1, 1] and labels (N,) int64 for a split.

    split: "train", "heldout" or "all".
    """
    images, labels = _raw()
    if split == "all":
        idx = np.arange(len(labels))
    elif split in ("train", "heldout"):
        tr, he = split_indices()
        idx = tr if split == "train" else he
    else:
        raise ValueError(f"split must be one of 'train', 'heldout', 'all'; got {split!r}")
    x = _upsample(images[idx] / 16.0, size) * 2.0 - 1.0
    x = np.clip(x, -1.0, 1.0)
    x = np.repeat(x[:, None], 3, axis=1)
    return np.ascontiguousarray(x, dtype=np.float32), labels[idx].copy()


def digits_tensors(split: str = "train", size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`digits_arrays`, as torch tensors."""
    import torch

    x, y = digits_arrays(split, size)
    return torch.from_numpy(x), torch.from_numpy(y)


def to_pil(images) -> list[Image.Image]:
    """Convert (N, 3, H, W) images in [-1, 1] (tensor or array) to RGB PIL images."""
    from PIL import Image

    arr = images.detach().cpu().float().numpy() if hasattr(images, "detach") else np.asarray(images)
    arr = np.clip((arr + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return [Image.fromarray(a) for a in arr]
