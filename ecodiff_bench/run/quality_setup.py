"""Builds a suite's quality metrics once per model and computes them for a set of generated images.

A metric that cannot be set up (Inception or CLIP weights not on disk, say) becomes "unavailable" with the
reason, for every variant alike; the rest of the run goes on.

On several processes each rank passes its share of the images; the metric states are summed across the
ranks when a value is computed, and a metric that fails to set up on any rank is unavailable on all.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch

from ecodiff_bench.core.metrics import METRICS
from ecodiff_bench.core.values import Value
from ecodiff_bench.run import distributed


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


CONSISTENCY = ("ssim_vs_base", "psnr_vs_base")


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
    built: dict[str, Any] = {}
    references: dict[str, torch.Tensor] = {}
    with distributed.together("setting up the quality metrics"):
        _build_into(built, references, ev, device)
    built = _agreed(built)
    for name, real in references.items():
        if not isinstance(built[name], Exception):
            try:
                _reference(built[name], real, cache / "reference")
            except (ValueError, RuntimeError, OSError) as err:
                built[name] = err
    return _agreed(built)


def _build_into(built: dict[str, Any], references: dict[str, torch.Tensor], ev, device) -> None:
    from ecodiff_bench.quality import ClipScore, EncoderFeatures, FrechetDistance

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
                built[name] = metric.to(device)
                references[name] = _reference_images(ev.reference)
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


def _agreed(built: dict[str, Any]) -> dict[str, Any]:
    """A metric that failed to set up on any rank is unavailable on every rank, with that rank's reason
    (the others would otherwise wait for it in the metric's sync)."""
    if not distributed.world().active:
        return built
    mine = {k: f"{type(v).__name__}: {v}" if isinstance(v, Exception) else None for k, v in built.items()}
    for rank, theirs in enumerate(distributed.gather_json(mine)):
        for name, why in theirs.items():
            if why and not isinstance(built[name], Exception):
                built[name] = RuntimeError(f"rank {rank}: {why}")
    return built


def _reference(metric, real: torch.Tensor, cache: Path) -> None:
    """The Fréchet metric's reference statistics, cached. Several processes: rank 0 alone reads or
    writes the cache and decides whether it holds them; otherwise each rank extracts the features of its
    share of the real images and the statistics are summed."""
    if not distributed.world().active:
        metric.load_or_compute_reference(lambda: _batches(real), cache_dir=cache)
        return
    from ecodiff_bench.quality.distributed import shard_range
    from ecodiff_bench.quality.frechet import ReferenceStats, hash_images

    w = distributed.world()
    data_hash = hash_images(_batches(real))
    cached = distributed.broadcast_json(
        metric.reference_path(cache, data_hash).is_file() if w.writer else None
    )
    if cached:  # rank 0 holds the statistics; the others add nothing to the summed states
        with distributed.together("reference statistics"):
            if w.writer:
                metric.load_or_compute_reference([], cache_dir=cache, data_hash=data_hash)
            else:
                dim = metric.feature_dim
                metric.set_reference(ReferenceStats(torch.zeros(dim), torch.zeros(dim, dim), 0, {}))
        return
    share = shard_range(len(real), w.rank, w.size)
    with distributed.together("reference features"):
        for state in (
            metric.real_features_sum,
            metric.real_features_cov_sum,
            metric.real_features_num_samples,
        ):
            state.zero_()
        for batch in _batches(real[share.start : share.stop]):
            metric.update(batch, real=True)
    stats = metric.real_stats()  # summed over the ranks
    stats.meta.update({"data_hash": data_hash, "settings": json.dumps(metric.settings, sort_keys=True)})
    if w.writer:
        stats.save(metric.reference_path(cache, data_hash))


def compute(
    built: dict[str, Any],
    wanted: list[str],
    images: torch.Tensor,
    prompts: list[str],
    base_images: torch.Tensor | None,
) -> dict[str, Value]:
    metrics = {n: built.get("consistency" if n in CONSISTENCY else n) for n in wanted}
    correct = None
    with distributed.together("quality metrics"):  # this rank's images; the states are summed below
        for name, metric in metrics.items():
            if isinstance(metric, Exception) or (name in CONSISTENCY and base_images is None):
                continue
            if name in ("fid", "frechet_distance"):
                metric.reset()
                metric.update(images.to(metric.device), real=False)
            elif name == "clip_score":
                metric.reset()
                metric.update(images, prompts)
            elif name == "recognisability":
                correct = _recognised(metric, images, prompts)
            elif name == next(n for n in metrics if n in CONSISTENCY):  # SSIM and PSNR come together
                metric.reset()
                metric.update(images, base_images)
    out: dict[str, Value] = {}
    for name, metric in metrics.items():
        unit, higher = METRICS.get(name).unit, METRICS.get(name).higher_is_better
        if isinstance(metric, Exception):
            out[name] = Value.unavailable(name, unit, f"{type(metric).__name__}: {metric}", higher)
        elif name in ("fid", "frechet_distance", "clip_score"):
            out[name] = metric.compute_value()
        elif name == "recognisability":
            out[name] = _recognisability(correct)
        elif base_images is None:  # the unpruned model is the reference itself
            out[name] = Value.unavailable(
                name, unit, "not applicable: this is the unpruned reference", higher
            )
        elif name not in out:  # ssim_vs_base and psnr_vs_base come together
            out.update({k: v for k, v in metric.compute().items() if k in wanted})
    return out


def _recognised(classifier, images: torch.Tensor, prompts: list[str]) -> list[float] | None:
    """[correct, total] over this rank's images, or None when a prompt names no digit."""
    from ecodiff_bench.zoo.data import digit_from_prompt

    labels = [digit_from_prompt(p) for p in prompts]
    if any(label is None for label in labels):
        return None
    pred = classifier.predict(images, value_range=(0.0, 1.0))
    return [float((pred == torch.tensor(labels)).sum()), float(len(labels))]


def _recognisability(correct: list[float] | None) -> Value:
    """The share recognised over every rank's images."""
    right, total, unnamed = distributed.sum_floats([*(correct or [0.0, 0.0]), float(correct is None)])
    if unnamed or not total:
        return Value.unavailable(
            "recognisability", "fraction", "evaluation prompts do not name a digit", True
        )
    return Value(
        "recognisability",
        right / total,
        "fraction",
        "measured",
        True,
        note="share of samples digits-clip assigns to the prompted digit",
        details={"n_samples": int(total), "classifier": "digits-clip zero-shot"},
    )
