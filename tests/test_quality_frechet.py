"""Fréchet distances: identity on the same set, agreement with an independent scipy reference, cached
reference statistics, fixed sample counts, and the Inception weights that must come from a local file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ecodiff_bench.quality.frechet import (
    INCEPTION_FILE_NAMES,
    EncoderFeatures,
    FrechetDistance,
    IncomparableError,
    ReferenceStats,
    check_comparable,
    find_inception_weights,
    hash_images,
)


class FlattenExtractor(nn.Module):
    """Features = the pixels themselves (a 'one-layer' extractor with no weights): exact and cheap."""

    num_features = 12

    def forward(self, x):
        return x.flatten(1)


class OneLayer(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * 4 * 4, d)
        self.num_features = d

    def forward(self, x):
        return self.proj(x.float().flatten(1))


def images(n, seed, size=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_same_set_is_zero():
    fd = FrechetDistance(OneLayer())
    x = images(64, 0, size=4)
    fd.update(x, real=True)
    fd.update(x, real=False)
    assert abs(float(fd.compute())) < 1e-6


def test_matches_independent_scipy_reference():
    real, fake = images(40, 1), images(50, 2) * 0.8 + 0.1
    fd = FrechetDistance(FlattenExtractor())
    for chunk in real.split(16):
        fd.update(chunk, real=True)
    for chunk in fake.split(7):
        fd.update(chunk, real=False)
    ours = float(fd.compute())
    ref = scipy_frechet(real.flatten(1).double().numpy(), fake.flatten(1).double().numpy())
    assert ours == pytest.approx(ref, abs=1e-6)
    v = fd.compute_value()
    assert v.name == "frechet_distance" and v.higher_is_better is False
    assert v.details["n_real"] == 40 and v.details["n_fake"] == 50 and v.details["feature_dim"] == 12


def test_reference_stats_are_cached_by_content(tmp_path):
    real = [images(30, 3), images(30, 4)]
    fake = images(60, 5)
    fd = FrechetDistance(FlattenExtractor())
    stats = fd.load_or_compute_reference(real, cache_dir=tmp_path)
    files = list(tmp_path.glob("frechet-ref-*.safetensors"))
    assert len(files) == 1 and stats.n == 60
    fd.update(fake, real=False)
    d1 = float(fd.compute())

    fd2 = FrechetDistance(FlattenExtractor())
    calls = []

    def batches():
        calls.append(1)
        return real

    stats2 = fd2.load_or_compute_reference(batches, cache_dir=tmp_path)
    assert len(calls) == 1  # hashed once, not featurized: the file was reused
    assert torch.equal(stats2.sigma, stats.sigma) and stats2.n == 60
    fd2.update(fake, real=False)
    assert float(fd2.compute()) == pytest.approx(d1, abs=1e-9)

    other = [images(30, 3), images(30, 6)]
    assert hash_images(other) != hash_images(real)
    FrechetDistance(FlattenExtractor()).load_or_compute_reference(other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("frechet-ref-*.safetensors"))) == 2


def test_reference_round_trip_and_extractor_check(tmp_path):
    s = ReferenceStats(torch.arange(3.0).double(), torch.eye(3).double(), 10, {"extractor_id": "x"})
    loaded = ReferenceStats.load(s.save(tmp_path / "r.safetensors"))
    assert torch.equal(loaded.mu, s.mu) and loaded.n == 10 and loaded.meta == {"extractor_id": "x"}
    fd = FrechetDistance(OneLayer(3))
    with pytest.raises(IncomparableError, match="computed with extractor_id x"):
        fd.set_reference(loaded)
    with pytest.raises(ValueError, match="have \\(3,\\) features, this extractor gives 12"):
        FrechetDistance(FlattenExtractor()).set_reference(loaded)


def test_fixed_sample_count_and_comparability():
    fd = FrechetDistance(FlattenExtractor(), num_samples=20)
    fd.update(images(30, 7), real=True)
    fd.update(images(19, 8), real=False)
    with pytest.raises(IncomparableError, match="num_samples=20 .* got 19"):
        fd.compute()
    fd.update(images(1, 9), real=False)
    a = fd.compute_value()
    assert a.details["n_fake"] == 20
    fd.reset()  # keeps the reference, clears the generated side
    fd.num_samples = None
    fd.update(images(25, 10), real=False)
    b = fd.compute_value()
    check_comparable(a, a)
    with pytest.raises(IncomparableError, match="n_fake=20.*n_fake=25"):
        check_comparable(a, b)


def test_missing_inception_weights_error_is_helpful(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ECODIFF_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        FrechetDistance()
    msg = str(err.value)
    assert INCEPTION_FILE_NAMES[0] in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "load_state_dict_from_url" in msg and "never substituted" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_inception_weights(tmp_path / "nope.pth")


def _fake_inception_file(path):
    """Random weights in the TF-Inception layout (torchvision's Inception3 has the same tensor names).
    Only for exercising the loading path: FID(x, x) = 0 holds for any weights."""
    from torchvision.models.inception import Inception3

    torch.manual_seed(0)
    torch.save(Inception3(num_classes=1008, aux_logits=False, init_weights=False).state_dict(), path)
    return path


@pytest.mark.slow  # Inception v3 at 299x299 on the CPU: ~10-40 s on 2 shared cores
def test_inception_path_from_local_file(tmp_path, monkeypatch):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    _fake_inception_file(hub / INCEPTION_FILE_NAMES[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ECODIFF_INCEPTION_WEIGHTS", raising=False)
    fid = FrechetDistance(num_samples=3)
    x = (images(3, 11, size=32) * 255).to(torch.uint8)
    fid.update(x, real=True)
    fid.update(x.float() / 255.0, real=False)  # floats are rounded back to the same uint8 pixels
    v = fid.compute_value()
    assert v.name == "fid" and abs(v.value) < 1e-3
    assert v.details["weights_sha256"] and v.details["antialias"] is False and "rank-deficient" in v.note


def test_inception_file_that_is_not_inception(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(10, 10)}, bad)
    with pytest.raises(ValueError, match="not the TF Inception v3"):
        FrechetDistance(feature_extractor_weights_path=bad)


def test_encoder_features_wraps_an_image_encoder():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.proj = nn.Linear(3 * 4 * 4, 6)

        def encode_image(self, x):
            return self.proj(x.flatten(1))

    extractor = EncoderFeatures(Encoder(), num_features=6)
    fd = FrechetDistance(extractor)
    assert fd.feature_dim == 6 and fd.extractor_id.startswith("EncoderFeatures/sha256:")
    x = images(20, 12, size=4)
    u8 = (x * 255).round().to(torch.uint8)
    fd.update(u8, real=True)  # uint8 reaches the extractor as float in [0, 1]
    fd.update(u8.float() / 255, real=False)
    assert abs(float(fd.compute())) < 1e-6
    custom = FrechetDistance(
        EncoderFeatures(Encoder(), lambda m, t: m.encode_image(t) * 2), input_img_size=(3, 4, 4)
    )
    assert custom.feature_dim == 6  # probed with a dummy image


def test_same_label_new_weights_does_not_reuse_a_stale_reference(tmp_path):
    real = [images(20, 13, size=4)]
    a = FrechetDistance(OneLayer(), extractor_id="digits-clip")
    a.load_or_compute_reference(real, cache_dir=tmp_path)
    retrained = OneLayer()
    with torch.no_grad():
        retrained.proj.weight.mul_(2)
    b = FrechetDistance(retrained, extractor_id="digits-clip")
    b.load_or_compute_reference(real, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("frechet-ref-*.safetensors"))) == 2
    with pytest.raises(IncomparableError, match="extractor_sha256"):
        b.set_reference(a.real_stats())
