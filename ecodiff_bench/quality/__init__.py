"""Quality metrics: FID (standard Inception, local weights), Fréchet distance with any feature extractor,
CLIP score (open_clip, local weights), and consistency with the unpruned model (SSIM, PSNR).

All are torchmetrics-style stateful metrics (update / compute / reset) whose states sum across processes,
and all report :class:`ecodiff_bench.core.values.Value` objects via ``compute_value()`` / ``compute()``.
"""

from ecodiff_bench.quality.clip_score import ClipScore, find_clip_checkpoint, load_open_clip
from ecodiff_bench.quality.consistency import ConsistencyVsBase
from ecodiff_bench.quality.distributed import init_distributed, rank_world, shard, shard_range
from ecodiff_bench.quality.frechet import (
    EncoderFeatures,
    FrechetDistance,
    IncomparableError,
    ReferenceStats,
    check_comparable,
    find_inception_weights,
    frechet_distance,
    hash_images,
    module_fingerprint,
)

__all__ = [
    "ClipScore",
    "ConsistencyVsBase",
    "EncoderFeatures",
    "FrechetDistance",
    "IncomparableError",
    "ReferenceStats",
    "check_comparable",
    "find_clip_checkpoint",
    "find_inception_weights",
    "frechet_distance",
    "hash_images",
    "init_distributed",
    "load_open_clip",
    "module_fingerprint",
    "rank_world",
    "shard",
    "shard_range",
]
