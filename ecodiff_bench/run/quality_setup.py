"""Builds a suite's quality metrics once per model and computes them for a set of generated images.

A metric that cannot be set up (Inception or CLIP weights not on disk, say) becomes "unavailable" with the
reason, for every variant alike; the rest of the run goes on.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from ecodiff_bench.core.metrics import METRICS
from ecodiff_bench.core.values import Value


def _reference_images(reference: str | None) -> torch.Tensor:
    """Real images in [0, 1]: the digits held-out split, or every image file of a directory."""
    if reference is None:
        raise ValueError("evaluation.reference is not set: fid / frechet_distance need real reference images")
    if reference == "digits-heldout":
        from ecodiff_bench.zoo.data import digits_tensors

        x, _ = digits_tensors("heldout")
        return (x + 1) / 2
    folder = Path(reference).expanduser()
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise FileNotFoundError(f"evaluation.reference: no images (png/jpg/webp) in {folder}")
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    return torch.stack([pil_to_tensor(Image.open(f).convert("RGB")) for f in files]).float() / 255


def _batches(x: torch.Tensor, size: int = 256):
    return [x[i : i + size] for i in range(0, len(x), size)]


@functools.lru_cache(maxsize=4)
def _digits_clip(device: str):
    """digits-clip, loaded once per device (both the Fréchet features and the CLIP score use it)."""
    from ecodiff_bench.zoo import encode_images, load_digits_clip

    model, preprocess, tokenizer = load_digits_clip(device)
    return model, preprocess, tokenizer, encode_images


def build(ev, cache: Path, device) -> dict[str, Any]:
    """Metric objects (or the reason each is unavailable) for the suite's evaluation section."""
    from ecodiff_bench.quality import ClipScore, EncoderFeatures, FrechetDistance

    built: dict[str, Any] = {}
    for name in ev.metrics:
        try:
            if name in ("fid", "frechet_distance"):
                if name == "fid" or ev.feature_extractor == "inception":
                    metric = FrechetDistance(
                        feature_extractor_weights_path=ev.inception_weights, num_samples=ev.samples, name=name
                    )
                else:
                    model, _, _, encode = _digits_clip(str(device))
                    feats = EncoderFeatures(
                        model,
                        lambda m, x, enc=encode: enc(m, x, normalize=False),
                        num_features=int(model.visual.output_dim),
                    )
                    metric = FrechetDistance(
                        feats, num_samples=ev.samples, name=name, extractor_id="digits-clip"
                    )
                real = _reference_images(ev.reference)
                metric.load_or_compute_reference(
                    lambda real=real: _batches(real), cache_dir=cache / "reference"
                )
                built[name] = metric.to(device)
            elif name == "clip_score":
                if ev.clip.name == "digits-clip":
                    model, preprocess, tokenizer, _ = _digits_clip(str(device))
                    built[name] = ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer)
                else:
                    local = None if ev.clip.pretrained == "openai" else ev.clip.pretrained
                    built[name] = ClipScore(ev.clip.name, local)
            elif name == "recognisability":
                from ecodiff_bench.zoo.classify import DigitsClassifier

                built[name] = DigitsClassifier(str(device))
            elif name in ("ssim_vs_base", "psnr_vs_base"):
                from ecodiff_bench.quality import ConsistencyVsBase

                built.setdefault("consistency", ConsistencyVsBase().to(device))
        except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
            built[name] = err
    return built


def compute(
    built: dict[str, Any],
    wanted: list[str],
    images: torch.Tensor,
    prompts: list[str],
    base_images: torch.Tensor | None,
) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for name in wanted:
        unit, higher = METRICS.get(name).unit, METRICS.get(name).higher_is_better
        metric = built.get("consistency") if name in ("ssim_vs_base", "psnr_vs_base") else built.get(name)
        if isinstance(metric, Exception):
            out[name] = Value.unavailable(name, unit, f"{type(metric).__name__}: {metric}", higher)
        elif name in ("fid", "frechet_distance"):
            metric.reset()
            metric.update(images.to(metric.device), real=False)
            out[name] = metric.compute_value()
        elif name == "clip_score":
            metric.reset()
            metric.update(images, prompts)
            out[name] = metric.compute_value()
        elif name == "recognisability":
            out[name] = _recognisability(metric, images, prompts)
        elif base_images is None:  # the unpruned model is the reference itself
            out[name] = Value.unavailable(
                name, unit, "not applicable: this is the unpruned reference", higher
            )
        elif name not in out:  # ssim_vs_base and psnr_vs_base come together
            metric.reset()
            metric.update(images, base_images)
            out.update({k: v for k, v in metric.compute().items() if k in wanted})
    return out


def _recognisability(classifier, images: torch.Tensor, prompts: list[str]) -> Value:
    from ecodiff_bench.zoo.data import digit_from_prompt

    labels = [digit_from_prompt(p) for p in prompts]
    if any(label is None for label in labels):
        return Value.unavailable(
            "recognisability", "fraction", "evaluation prompts do not name a digit", True
        )
    pred = classifier.predict(images, value_range=(0.0, 1.0))
    ok = (pred == torch.tensor(labels)).float()
    return Value(
        "recognisability",
        float(ok.mean()),
        "fraction",
        "measured",
        True,
        note="share of samples digits-clip assigns to the prompted digit",
        details={"n_samples": len(labels), "classifier": "digits-clip zero-shot"},
    )
