"""CLIP score through open_clip: 100 x cosine(image embedding, prompt embedding), averaged over images.

Default model as MLPerf's SDXL benchmark: ViT-B-32 with OpenAI's weights (QuickGELU), loaded from a local
file only. The usual definition (Hessel et al.; torchmetrics) clamps each image's cosine at 0; we do the
same by default (``clamp_at_zero``; it only matters for unrelated pairs, whose cosine can dip below 0).
torchmetrics' own CLIPScore is not used: with transformers 5 it fails on ``get_image_features``.

A stateful torchmetrics Metric (sum and count, "sum"-reduced), so sharded processes sync exactly.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from ecodiff_bench.core.values import Value
from ecodiff_bench.quality._images import check_images, to_uint8

__all__ = ["CLIP_ENV", "ClipScore", "clip_search_paths", "find_clip_checkpoint", "load_open_clip"]

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_HF_REPO = "timm/vit_base_patch32_clip_224.openai"
DEFAULT_FILE = "open_clip_model.safetensors"
CLIP_ENV = "ECODIFF_CLIP_CHECKPOINT"


def _hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def clip_search_paths() -> list[Path]:
    """Where the default checkpoint is looked for: ``$ECODIFF_CLIP_CHECKPOINT``, then the Hugging Face
    cache's snapshot of timm/vit_base_patch32_clip_224.openai (what open_clip itself downloads)."""
    out = []
    if os.environ.get(CLIP_ENV):
        out.append(Path(os.environ[CLIP_ENV]).expanduser())
    repo_dir = _hf_hub_cache() / ("models--" + DEFAULT_HF_REPO.replace("/", "--"))
    snapshots = [Path(p) for p in sorted(glob.glob(str(repo_dir / "snapshots" / "*" / DEFAULT_FILE)))]
    return out + (snapshots or [repo_dir / "snapshots" / "<revision>" / DEFAULT_FILE])


def find_clip_checkpoint(
    model_name: str = DEFAULT_MODEL, checkpoint_path: str | os.PathLike | None = None
) -> str:
    """The local weights file for ``model_name``, or FileNotFoundError saying what, where, and how."""
    how = (
        f"On a machine with network access: `huggingface-cli download {DEFAULT_HF_REPO} {DEFAULT_FILE}` (or "
        f"`python -c \"import open_clip; open_clip.create_model('ViT-B-32', pretrained='openai')\"`), copy "
        f"the file here, and pass checkpoint_path=... or set {CLIP_ENV}."
    )
    if checkpoint_path is not None:
        p = Path(checkpoint_path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"CLIP score: checkpoint_path={str(p)!r} does not exist. {how}")
        return str(p)
    if model_name != DEFAULT_MODEL:
        raise FileNotFoundError(
            f"CLIP score: model {model_name!r} needs checkpoint_path= (a local open_clip "
            "weights file), or model_name='local-dir:/path' holding open_clip_config.json "
            "and the weights; nothing is downloaded"
        )
    searched = clip_search_paths()
    for p in searched:
        if p.is_file():
            return str(p)
    raise FileNotFoundError(
        f"CLIP score: no local weights for {DEFAULT_MODEL} (OpenAI) found in: "
        f"{', '.join(str(p) for p in searched)}. {how}"
    )


def load_open_clip(
    model_name: str = DEFAULT_MODEL,
    checkpoint_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    force_quick_gelu: bool | None = None,
) -> tuple[nn.Module, Callable, Callable]:
    """(model, preprocess, tokenizer) from local files only. ``model_name`` is an open_clip architecture
    (with ``checkpoint_path`` or the default search) or ``local-dir:/path`` (config + weights inside).
    ``force_quick_gelu`` defaults to True for ViT-B-32 (OpenAI's weights were trained with QuickGELU)."""
    import open_clip

    if model_name.startswith("hf-hub:"):
        raise ValueError(
            f"model_name: {model_name!r} would download from the hub; download it elsewhere and "
            "use 'local-dir:/path' or checkpoint_path="
        )
    if model_name.startswith("local-dir:"):
        local = Path(model_name.removeprefix("local-dir:"))
        if not (local / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"model_name: {local / 'open_clip_config.json'} does not exist")
        if not any(any(local.glob(f"*{ext}")) for ext in (".safetensors", ".bin", ".pth")):
            # open_clip would build the model with random weights and only log a warning
            raise FileNotFoundError(
                f"model_name: no weights file (*.safetensors, *.bin, *.pth) in {local}; "
                "random weights are never used for CLIP score"
            )
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, device=device)
        return model.eval(), preprocess, open_clip.get_tokenizer(model_name)
    path = find_clip_checkpoint(model_name, checkpoint_path)
    if force_quick_gelu is None:
        force_quick_gelu = model_name == DEFAULT_MODEL
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=path, device=device, force_quick_gelu=force_quick_gelu
    )
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


class ClipScore(Metric):
    """``update(images, prompts)``; ``compute()`` = mean over images of 100 x cos (clamped at 0 unless
    ``clamp_at_zero=False``); ``compute_value()`` gives the ``clip_score`` Value.

    Either ``model_name``/``checkpoint_path`` (local files, see :func:`load_open_clip`) or a preloaded
    ``model``, ``preprocess`` (PIL image -> tensor, as open_clip returns) and ``tokenizer``. Images are
    (N, 3, H, W) uint8 or float in [0, 1], or a list of PIL images; each goes through ``preprocess``
    exactly as a decoded PNG would.
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    score_sum: Tensor
    n: Tensor

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        checkpoint_path: str | os.PathLike | None = None,
        *,
        model: nn.Module | None = None,
        preprocess: Callable | None = None,
        tokenizer: Callable | None = None,
        clamp_at_zero: bool = True,
        force_quick_gelu: bool | None = None,
        **metric_kwargs: Any,
    ):
        super().__init__(**metric_kwargs)
        if model is None:
            if preprocess is not None or tokenizer is not None:
                raise ValueError("preprocess/tokenizer: given without model; pass all three or none")
            model, preprocess, tokenizer = load_open_clip(
                model_name, checkpoint_path, force_quick_gelu=force_quick_gelu
            )
            self.model_label = model_name if checkpoint_path is None else f"{model_name} ({checkpoint_path})"
        else:
            missing = [n for n, v in (("preprocess", preprocess), ("tokenizer", tokenizer)) if v is None]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)}: required with a preloaded model (an open_clip "
                    "(model, preprocess, tokenizer) triple)"
                )
            self.model_label = type(model).__name__
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.clamp_at_zero = bool(clamp_at_zero)
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _pixels(self, images: Tensor | Sequence[Any]) -> Tensor:
        from torchvision.transforms.functional import to_pil_image

        if isinstance(images, Tensor):
            pil = [to_pil_image(im) for im in to_uint8(check_images(images)).cpu()]
        else:
            pil = list(images)
        param = next(self.model.parameters())
        return torch.stack([self.preprocess(im) for im in pil]).to(param.device, param.dtype)

    @torch.no_grad()
    def scores(self, images: Tensor | Sequence[Any], prompts: Sequence[str]) -> Tensor:
        """Per-image scores (100 x cos, clamped if configured), without touching the state."""
        if isinstance(prompts, str):
            raise TypeError("prompts: expected a sequence of strings (one per image), got a single string")
        prompts = list(prompts)
        n_images = images.shape[0] if isinstance(images, Tensor) else len(images)
        if n_images != len(prompts):
            raise ValueError(f"prompts: expected one per image ({n_images} images), got {len(prompts)}")
        pixels = self._pixels(images)
        tokens = self.tokenizer(prompts).to(pixels.device)
        img = self.model.encode_image(pixels).float()
        txt = self.model.encode_text(tokens).float()
        score = 100.0 * F.cosine_similarity(img, txt, dim=-1)
        return score.clamp(min=0) if self.clamp_at_zero else score

    def update(self, images: Tensor | Sequence[Any], prompts: Sequence[str]) -> None:  # type: ignore[override]
        s = self.scores(images, prompts)
        self.score_sum += s.double().sum().to(self.score_sum.device)
        self.n += s.numel()

    def compute(self) -> Tensor:  # type: ignore[override]
        n = int(self.n)  # summed over processes here: torchmetrics syncs states around compute()
        if n == 0:
            raise RuntimeError("clip_score: no images were scored")
        self._last_n = n
        return self.score_sum / n

    def compute_value(self) -> Value:
        v = float(self.compute())
        return Value.of(
            "clip_score",
            v,
            note="mean of 100 x cosine(image, prompt)" + (" clamped at 0" if self.clamp_at_zero else ""),
            details={"model": self.model_label, "n": self._last_n, "clamp_at_zero": self.clamp_at_zero},
        )
