"""Fréchet distances: FID with the standard Inception weights, and the same distance with any feature
extractor (e.g. the digits zoo's CLIP image encoder).

Both are torchmetrics ``FrechetInceptionDistance`` underneath (its states are sums declared with a
"sum" reduction, so sharded processes sync exactly). What this module adds:

- the Inception weights come from a local file only: no download, never random weights; a missing file
  is an error naming the file, the places searched, and how to get it;
- reference statistics (mu, sigma, n of the real images) are cached by content hash as safetensors and
  injected into the metric, so the real set is featurized once;
- a fixed sample count: ``num_samples`` makes ``compute()`` refuse a different number of generated
  images, and :func:`check_comparable` refuses to compare values computed at unequal counts (FID is
  biased by N);
- the result in float64 as a :class:`~ecodiff_bench.core.values.Value` with its settings in ``details``.

Images: uint8 in [0, 255] or float in [0, 1], shape (N, 3, H, W). For the Inception path, floats are
rounded to uint8 (as saving a PNG would; torchmetrics' own ``normalize`` truncates instead).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ecodiff_bench.core.files import atomic_path
from ecodiff_bench.core.values import Value
from ecodiff_bench.quality._images import check_images, to_float01, to_uint8

__all__ = [
    "INCEPTION_FILE_NAMES",
    "IncomparableError",
    "FrechetDistance",
    "ReferenceStats",
    "check_comparable",
    "find_inception_weights",
    "frechet_distance",
    "hash_images",
    "inception_search_paths",
    "module_fingerprint",
    "to_uint8",
]

# torch-fidelity's file (what torchmetrics downloads) and pytorch-fid's (what MLPerf names); both hold the
# TF Inception (2015-12-05) weights under the same tensor names, and both load here.
INCEPTION_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE_NAMES[0]
INCEPTION_ENV = "ECODIFF_INCEPTION_WEIGHTS"
FRECHET_METRICS = ("fid", "frechet_distance")  # the catalog's names of a Fréchet distance


class IncomparableError(ValueError):
    """Two quality values computed under different settings (sample counts, feature extractors)."""


# --------------------------------------------------------------------------------------------------
# Inception weights
# --------------------------------------------------------------------------------------------------
def inception_search_paths() -> list[Path]:
    """Where the weights are looked for: ``$ECODIFF_INCEPTION_WEIGHTS``, then torch hub's checkpoint
    cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``, where torchmetrics
    and pytorch-fid download them)."""
    out = []
    env = os.environ.get(INCEPTION_ENV)
    if env:
        out.append(Path(env).expanduser())
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    out += [hub / name for name in INCEPTION_FILE_NAMES]
    return out


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The local Inception weights file, or FileNotFoundError saying what, where, and how to get it."""
    how = (
        f'Get it on a machine with network access, e.g. `python -c "import torch; '
        f"torch.hub.load_state_dict_from_url('{INCEPTION_URL}')\"` (it lands in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'}), copy it to this machine, and pass "
        f"feature_extractor_weights_path=... or set {INCEPTION_ENV}."
    )
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(
                f"FID Inception weights: feature_extractor_weights_path={str(p)!r} does not "
                f"exist. Expected the file {INCEPTION_FILE_NAMES[0]} (or "
                f"{INCEPTION_FILE_NAMES[1]}). {how}"
            )
        return p
    searched = inception_search_paths()
    for p in searched:
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"FID needs the standard Inception weights file {INCEPTION_FILE_NAMES[0]} (or pytorch-fid's "
        f"{INCEPTION_FILE_NAMES[1]}); not found in: {', '.join(str(p) for p in searched)}. {how} "
        "Random weights are never substituted."
    )


def _check_inception_file(path: Path) -> str:
    """Load with ``weights_only=True`` (torch's restricted unpickler: tensors and containers only) and
    check the expected layers; return the file's SHA-256. torch-fidelity then loads the same file
    itself; this check guarantees that file holds nothing but tensors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"FID Inception weights {path}: not a plain tensor state dict ({err})") from err
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if fc is None or tuple(fc.shape) != (1008, 2048) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ValueError(
            f"FID Inception weights {path}: not the TF Inception v3 (2015-12-05) state dict "
            f"(expected fc.weight of shape (1008, 2048) and Mixed_7c layers)"
        )
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# hashing and the distance itself
# --------------------------------------------------------------------------------------------------
def _hash_tensor(h, t: Tensor) -> None:
    t = t.detach()
    h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    if t.device.type == "meta":
        return
    t = t.cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    h.update(t.numpy().tobytes())


def hash_images(batches: Iterable[Tensor]) -> str:
    """SHA-256 over the images' shapes, dtypes and bytes (the content key of reference statistics)."""
    h = hashlib.sha256()
    for batch in batches:
        _hash_tensor(h, batch)
    return h.hexdigest()


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's class, parameter and buffer names, shapes and values."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), in float64.

    Written here rather than taken from torchmetrics because its FID casts the result to the features'
    dtype (float32); same method as torchmetrics: the trace of the matrix square root is the sum of the
    square roots of the eigenvalues of sigma1 @ sigma2 (real, non-negative up to rounding)."""
    mu1, mu2, sigma1, sigma2 = (x.double() for x in (mu1, mu2, sigma1, sigma2))
    diff = (mu1 - mu2).square().sum()
    tr_sqrt = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float(diff + sigma1.trace() + sigma2.trace() - 2.0 * tr_sqrt)


# --------------------------------------------------------------------------------------------------
# reference statistics
# --------------------------------------------------------------------------------------------------
@dataclass
class ReferenceStats:
    """Mean, covariance (unbiased, N-1) and count of the reference set's features, with provenance."""

    mu: Tensor
    sigma: Tensor
    n: int
    meta: dict[str, str] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_path(path) as tmp:  # a concurrent reader never sees half a file
            save_file(
                {
                    "mu": self.mu.double().contiguous().cpu(),
                    "sigma": self.sigma.double().contiguous().cpu(),
                    "n": torch.tensor([self.n], dtype=torch.int64),
                },
                str(tmp),
                metadata={"meta": json.dumps(self.meta, sort_keys=True), "format": "ecodiff-frechet-ref-1"},
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceStats:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            return cls(
                mu=f.get_tensor("mu"), sigma=f.get_tensor("sigma"), n=int(f.get_tensor("n")[0]), meta=meta
            )


class EncoderFeatures(nn.Module):
    """Any image encoder as a Fréchet feature extractor: ``forward(x) = encode(model, x)`` (default
    ``model.encode_image(x)``). E.g. the digits zoo's CLIP:
    ``EncoderFeatures(clip, lambda m, x: zoo.encode_images(m, x, normalize=False), num_features=D)``.
    The wrapped model's weights define the extractor's identity (its fingerprint)."""

    def __init__(
        self,
        model: nn.Module,
        encode: Callable[[nn.Module, Tensor], Tensor] | None = None,
        *,
        num_features: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.encode = encode
        if num_features is not None:
            self.num_features = int(num_features)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.encode(self.model, x) if self.encode is not None else self.model.encode_image(x)


def _inception_settings(path: Path, sha: str, antialias: bool) -> dict:
    """What the Inception path's value records (and its reference cache is keyed by)."""
    return {
        "extractor": "inception-v3 (TF 2015-12-05 weights)",
        "weights_file": str(path),
        "weights_sha256": sha,
        "features": 2048,
        "antialias": antialias,
        "resize": 299,
        "input": "uint8 (floats rounded)",
    }


def _check_extractor(feature_extractor: Any, weights_path: Any) -> None:
    """A custom feature extractor is a module, given without the Inception's weights; put in eval mode."""
    if not isinstance(feature_extractor, nn.Module):
        raise TypeError(
            f"feature_extractor: expected a torch.nn.Module, got {type(feature_extractor).__name__}"
        )
    if weights_path is not None:
        raise ValueError(
            "feature_extractor_weights_path: only for the standard Inception; it was given "
            "together with a custom feature_extractor"
        )
    feature_extractor.eval().requires_grad_(False)


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FrechetDistance(FrechetInceptionDistance):
    """FID (no ``feature_extractor``: the standard Inception, 2048 features, from a local file) or the
    Fréchet distance in any feature space (``feature_extractor``: an nn.Module mapping (N, 3, H, W)
    images to (N, D) features; give it ``num_features`` or ``input_img_size`` for torchmetrics' probe).

    ``update(images, real=...)``; ``reset()`` clears the generated side only (the reference is kept);
    ``compute()`` gives a float64 tensor; ``compute_value()`` a Value named ``fid`` or
    ``frechet_distance`` (override with ``name``). ``num_samples`` fixes the number of generated images
    ``compute()`` accepts. ``antialias``: torchmetrics' antialiased resize to 299 (True) or torch-fidelity's
    TF1-compatible bilinear resize (False, the default: closest to the reference implementations).
    """

    higher_is_better = False

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        *,
        feature_extractor_weights_path: str | os.PathLike | None = None,
        num_samples: int | None = None,
        name: str | None = None,
        extractor_id: str | None = None,
        antialias: bool = False,
        input_img_size: tuple[int, int, int] = (3, 299, 299),
        **metric_kwargs: Any,
    ):
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2
        ):
            raise ValueError(f"num_samples: expected an integer >= 2 or None, got {num_samples!r}")
        if name is not None and name not in FRECHET_METRICS:
            raise ValueError(f"name: expected one of {FRECHET_METRICS} (the catalog's), got {name!r}")
        if feature_extractor is None:
            path = find_inception_weights(feature_extractor_weights_path)
            sha = _check_inception_file(path)
            super().__init__(
                feature=2048,
                reset_real_features=False,
                normalize=False,
                feature_extractor_weights_path=str(path),
                antialias=antialias,
                **metric_kwargs,
            )
            self.metric_name = name or "fid"
            self.fingerprint = sha
            self.extractor_id = extractor_id or f"inception-v3-tf-2015-12-05/sha256:{sha}"
            self.settings = _inception_settings(path, sha, antialias)
        else:
            _check_extractor(feature_extractor, feature_extractor_weights_path)
            super().__init__(
                feature=feature_extractor,
                reset_real_features=False,
                normalize=True,
                input_img_size=input_img_size,
                **metric_kwargs,
            )
            self.metric_name = name or "frechet_distance"
            self.fingerprint = module_fingerprint(feature_extractor)
            kind = type(feature_extractor).__qualname__
            self.extractor_id = extractor_id or f"{kind}/sha256:{self.fingerprint}"
            self.settings = {"extractor": kind, "extractor_sha256": self.fingerprint}
        self.num_samples = num_samples
        self.feature_dim = int(self.real_features_sum.shape[0])
        self._last: dict[str, Any] = {}

    # -- updates ------------------------------------------------------------------------------------
    def update(self, imgs: Tensor, real: bool) -> None:  # type: ignore[override]
        """Inception: images become uint8 (floats rounded). Custom extractors get float32 in [0, 1]
        (uint8 is scaled), so both kinds of input work with either."""
        if not self.used_custom_model:
            imgs = to_uint8(check_images(imgs))
        elif imgs.dtype == torch.uint8:
            imgs = to_float01(imgs)
        super().update(imgs.to(self.device), real)

    # -- reference ----------------------------------------------------------------------------------
    def real_stats(self) -> ReferenceStats:
        """Reference statistics of the real images seen so far (summed over processes when sharded)."""
        with self.sync_context():
            n = int(self.real_features_num_samples)
            if n < 2:
                raise RuntimeError(
                    f"{self.metric_name}: need at least 2 real images for reference statistics, have {n}"
                )
            mu = self.real_features_sum / n
            sigma = (self.real_features_cov_sum - n * torch.outer(mu, mu)) / (n - 1)
        return ReferenceStats(
            mu.clone(),
            sigma.clone(),
            n,
            {
                "extractor_id": self.extractor_id,
                "extractor_sha256": self.fingerprint,
                "feature_dim": str(self.feature_dim),
            },
        )

    def set_reference(self, stats: ReferenceStats) -> None:
        """Replace the real side by ``stats``. When sharded, rank 0 holds them and the others hold zeros,
        so the summed states are exactly the reference."""
        if (
            tuple(stats.mu.shape) != (self.feature_dim,)
            or tuple(stats.sigma.shape) != (self.feature_dim,) * 2
        ):
            raise ValueError(
                f"{self.metric_name}: reference statistics have {tuple(stats.mu.shape)} features, "
                f"this extractor gives {self.feature_dim}"
            )
        for key, mine in (("extractor_id", self.extractor_id), ("extractor_sha256", self.fingerprint)):
            theirs = stats.meta.get(key)
            if theirs and theirs != mine:
                raise IncomparableError(
                    f"{self.metric_name}: reference statistics were computed with {key} "
                    f"{theirs}, this metric uses {mine}"
                )
        rank, _ = _dist_rank_world()
        dev = self.real_features_sum.device
        n = stats.n if rank == 0 else 0
        mu = stats.mu.to(dev, torch.float64)
        self.real_features_sum = mu * n
        self.real_features_cov_sum = (
            stats.sigma.to(dev, torch.float64) * (n - 1) + n * torch.outer(mu, mu)
            if n
            else torch.zeros_like(self.real_features_cov_sum)
        )
        self.real_features_num_samples = torch.tensor(n, dtype=torch.long, device=dev)
        self._computed = None

    def reference_key(self, data_hash: str) -> str:
        blob = json.dumps(
            {
                "data": data_hash,
                "extractor": self.extractor_id,
                "weights": self.fingerprint,
                "settings": {k: v for k, v in self.settings.items() if k != "weights_file"},
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def reference_path(self, cache_dir: str | os.PathLike, data_hash: str) -> Path:
        """Where :meth:`load_or_compute_reference` caches the statistics of ``data_hash``."""
        return Path(cache_dir) / f"frechet-ref-{self.reference_key(data_hash)[:32]}.safetensors"

    def load_or_compute_reference(
        self,
        real_images: Iterable[Tensor] | Callable[[], Iterable[Tensor]],
        *,
        cache_dir: str | os.PathLike,
        data_hash: str | None = None,
    ) -> ReferenceStats:
        """Reference statistics of ``real_images`` (batches; or a callable returning them), cached under
        ``cache_dir`` by (content hash, extractor, settings). Without ``data_hash`` the images are hashed
        first, so they must be re-iterable. When sharded, pass ``data_hash`` (the same on every rank)
        and give each rank its own shard; rank 0 writes the cache file.
        """
        batches = real_images if callable(real_images) else (lambda: real_images)
        rank, world = _dist_rank_world()
        if data_hash is None:
            if world > 1:
                raise ValueError(
                    "data_hash: required when the reference set is sharded across processes "
                    "(each rank sees a different shard, so the content hash must come from the caller)"
                )
            data_hash = hash_images(batches())
        path = self.reference_path(cache_dir, data_hash)
        if path.is_file():
            stats = ReferenceStats.load(path)
            self.set_reference(stats)
            return stats
        self.real_features_sum.zero_()
        self.real_features_cov_sum.zero_()
        self.real_features_num_samples.zero_()
        for batch in batches():
            self.update(batch, real=True)
        stats = self.real_stats()
        stats.meta.update({"data_hash": data_hash, "settings": json.dumps(self.settings, sort_keys=True)})
        if rank == 0:
            stats.save(path)
        return stats

    # -- result -------------------------------------------------------------------------------------
    def compute(self) -> Tensor:  # type: ignore[override]
        n_real, n_fake = int(self.real_features_num_samples), int(self.fake_features_num_samples)
        if n_real < 2 or n_fake < 2:
            raise RuntimeError(
                f"{self.metric_name}: need at least 2 real and 2 generated images, have "
                f"{n_real} real and {n_fake} generated"
            )
        if self.num_samples is not None and n_fake != self.num_samples:
            raise IncomparableError(
                f"{self.metric_name}: set up for num_samples={self.num_samples} generated images "
                f"but got {n_fake}; Fréchet distances are biased by the sample count, so they "
                "are only computed (and compared) at the fixed count"
            )
        mu_r = self.real_features_sum / n_real
        mu_f = self.fake_features_sum / n_fake
        sig_r = (self.real_features_cov_sum - n_real * torch.outer(mu_r, mu_r)) / (n_real - 1)
        sig_f = (self.fake_features_cov_sum - n_fake * torch.outer(mu_f, mu_f)) / (n_fake - 1)
        self._last = {"n_real": n_real, "n_fake": n_fake}
        return torch.tensor(frechet_distance(mu_r, sig_r, mu_f, sig_f), dtype=torch.float64)

    def compute_value(self) -> Value:
        d = float(self.compute())
        n_real, n_fake = self._last["n_real"], self._last["n_fake"]
        details = {
            "n_real": n_real,
            "n_fake": n_fake,
            "num_samples": self.num_samples,
            "feature_dim": self.feature_dim,
            "extractor_id": self.extractor_id,
            **self.settings,
        }
        note = ""
        if min(n_real, n_fake) <= self.feature_dim:
            note = (
                f"fewer samples ({min(n_real, n_fake)}) than feature dimensions ({self.feature_dim}): "
                "rank-deficient covariance; compare only at equal N"
            )
        return Value.of(self.metric_name, d, note=note, details=details)


def check_comparable(*values: Value) -> None:
    """Raise IncomparableError unless the Fréchet values share name, sample counts and extractor."""
    keys = ("n_real", "n_fake", "extractor_id")
    seen = {(v.name, *(v.details.get(k) for k in keys)) for v in values if v.available}
    if len(seen) > 1:
        rows = "; ".join(f"{v.name}: " + ", ".join(f"{k}={v.details.get(k)}" for k in keys) for v in values)
        raise IncomparableError(
            f"Fréchet distances computed under different settings cannot be compared: {rows}"
        )
