"""Builds a suite's quality metrics once per model and computes them for a set of generated images.

Each quality metric of the catalog (:mod:`ecodiff_bench.core.metrics`, ``stage == "evaluation"``) has a
:class:`QualityMetric` in ``QUALITY`` under the same name: how it is set up from the suite's evaluation
section and how it scores this rank's images. ``build`` and ``compute`` only look them up.

A metric that cannot be set up (Inception or CLIP weights not on disk, say) becomes "unavailable" with the
reason, for every variant alike; the rest of the run goes on.

On several processes each rank passes its share of the images; the metric states are summed across the
ranks when a value is computed, and a metric that fails to set up on any rank is unavailable on all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch

from ecodiff_bench.core.registry import Registry
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


def _batches(x: torch.Tensor, size: int = 256):
    return [x[i : i + size] for i in range(0, len(x), size)]


@lru_cache(maxsize=4)
def _digits_clip(device: str):
    """digits-clip, loaded once per device (both the Fréchet features and the CLIP score use it)."""
    from ecodiff_bench.zoo import encode_images, load_digits_clip

    model, preprocess, tokenizer = load_digits_clip(device)
    return model, preprocess, tokenizer, encode_images


@dataclass(frozen=True)
class Images:
    """What a model's quality is measured on: this rank's generated images, their prompts, and the
    unpruned model's images of the same seeds (None for the unpruned model itself)."""

    images: torch.Tensor
    prompts: list[str]
    base: torch.Tensor | None


@dataclass(frozen=True)
class QualityMetric:
    """How one quality metric of the catalog is set up for a suite and computed.

    ``setup(ev, device)`` builds the metric object from the suite's evaluation section (and raises what
    is missing: weights, a reference folder). ``update(obj, images)`` feeds it this rank's images and
    returns what this rank adds beside the object's own state (or None). ``value(obj, added)`` is the
    Value over every rank's images: every rank calls it, in the same order (it may sync across ranks).
    ``reference``: it needs the real reference images' statistics (Fréchet). ``needs_base``: it compares
    with the unpruned model's images, so the unpruned model itself has none.
    """

    setup: Callable[[Any, str], Any]
    update: Callable[[Any, Images], Any]
    value: Callable[[Any, Any], Value]
    reference: bool = False
    needs_base: bool = False


#: One entry per quality metric of the catalog (``stage == "evaluation"``), under the same name.
QUALITY: Registry[QualityMetric] = Registry("quality metric")


def _frechet(name: str, ev, device: str):
    """fid always in Inception's feature space; frechet_distance in the suite's feature extractor's."""
    from ecodiff_bench.quality import EncoderFeatures, FrechetDistance

    if name == "fid" or ev.feature_extractor == "inception":
        metric = FrechetDistance(
            feature_extractor_weights_path=ev.inception_weights, num_samples=ev.samples, name=name
        )
    else:
        model, _, _, encode = _digits_clip(device)
        feats = EncoderFeatures(
            model,
            lambda m, x, enc=encode: enc(m, x, normalize=False),
            num_features=int(model.visual.output_dim),
        )
        metric = FrechetDistance(feats, num_samples=ev.samples, name=name, extractor_id="digits-clip")
    return metric.to(device)


def _clip(ev, device: str):
    from ecodiff_bench.quality import ClipScore

    if ev.clip.name == "digits-clip":
        model, preprocess, tokenizer, _ = _digits_clip(device)
        return ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer)
    return ClipScore(ev.clip.name, None if ev.clip.pretrained == "openai" else ev.clip.pretrained)


def _classifier(ev, device: str):
    from ecodiff_bench.zoo.classify import DigitsClassifier

    return DigitsClassifier(device)


def _consistency(name: str, ev, device: str):
    from ecodiff_bench.quality import ConsistencyVsBase

    return ConsistencyVsBase(metrics=(name,)).to(device)


def _update_frechet(metric, x: Images) -> None:
    metric.reset()
    metric.update(x.images.to(metric.device), real=False)


def _update_clip(metric, x: Images) -> None:
    metric.reset()
    metric.update(x.images, x.prompts)


def _update_consistency(metric, x: Images) -> None:
    metric.reset()
    metric.update(x.images, x.base)


def _computed(metric, _added) -> Value:
    return metric.compute_value()


def _consistency_value(name: str, metric, _added) -> Value:
    return metric.compute()[name]


def _recognised(classifier, x: Images) -> list[float] | None:
    """[correct, total] over this rank's images, or None when a prompt names no digit."""
    from ecodiff_bench.zoo.data import digit_from_prompt

    labels = [digit_from_prompt(p) for p in x.prompts]
    if any(label is None for label in labels):
        return None
    pred = classifier.predict(x.images, value_range=(0.0, 1.0))
    return [float((pred == torch.tensor(labels)).sum()), float(len(labels))]


def _recognisability(_classifier, correct: list[float] | None) -> Value:
    """The share recognised over every rank's images."""
    right, total, unnamed = distributed.sum_floats([*(correct or [0.0, 0.0]), float(correct is None)])
    if unnamed or not total:
        return Value.unavailable_of("recognisability", "evaluation prompts do not name a digit")
    return Value.of(
        "recognisability",
        right / total,
        note="share of samples digits-clip assigns to the prompted digit",
        details={"n_samples": int(total), "classifier": "digits-clip zero-shot"},
    )


_FRECHET = {"update": _update_frechet, "value": _computed, "reference": True}
QUALITY.register("fid", QualityMetric(partial(_frechet, "fid"), **_FRECHET))
QUALITY.register("frechet_distance", QualityMetric(partial(_frechet, "frechet_distance"), **_FRECHET))
QUALITY.register("clip_score", QualityMetric(_clip, _update_clip, _computed))
for _name in ("ssim_vs_base", "psnr_vs_base"):
    QUALITY.register(
        _name,
        QualityMetric(
            partial(_consistency, _name),
            _update_consistency,
            partial(_consistency_value, _name),
            needs_base=True,
        ),
    )
QUALITY.register("recognisability", QualityMetric(_classifier, _recognised, _recognisability))


def build(ev, cache: Path, device) -> dict[str, Any]:
    """Metric objects (or the reason each is unavailable) for the suite's evaluation section."""
    built: dict[str, Any] = {}
    references: dict[str, torch.Tensor] = {}
    with distributed.together("setting up the quality metrics"):
        for name in ev.metrics:
            quality = QUALITY.get(name)
            try:
                built[name] = quality.setup(ev, str(device))
                if quality.reference:
                    references[name] = _reference_images(ev.reference)
            except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
                built[name] = err
    built = _agreed(built)
    for name, real in references.items():
        if not isinstance(built[name], Exception):
            try:
                _reference(built[name], real, cache / "reference")
            except (ValueError, RuntimeError, OSError) as err:
                built[name] = err
    return _agreed(built)


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
    """The ``wanted`` quality values of this rank's ``images`` (each rank passes its share)."""
    x = Images(images, prompts, base_images)
    added: dict[str, Any] = {}
    with distributed.together("quality metrics"):  # this rank's images; the states are summed below
        for name in wanted:
            if _applies(name, built[name], x):
                added[name] = QUALITY.get(name).update(built[name], x)
    out: dict[str, Value] = {}
    for name in wanted:
        metric = built[name]
        if isinstance(metric, Exception):
            out[name] = Value.unavailable_of(name, f"{type(metric).__name__}: {metric}")
        elif not _applies(name, metric, x):
            out[name] = Value.unavailable_of(name, "not applicable: this is the unpruned reference")
        else:
            out[name] = QUALITY.get(name).value(metric, added[name])
    return out


def _applies(name: str, metric: Any, x: Images) -> bool:
    """Whether ``name`` is computed: it was set up, and it has the base images it compares with."""
    return not isinstance(metric, Exception) and (x.base is not None or not QUALITY.get(name).needs_base)
