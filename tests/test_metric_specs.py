"""The catalog's MetricSpec is the one description of a metric: values take their unit and direction from
it, the ranks of a several-process run combine a figure by its rule, and every quality metric it lists
has one builder on the torch side (and nothing else does)."""

from __future__ import annotations

import pytest
import torch

from ecodiff_bench.core.metrics import METRICS, QUALITY_METRICS, metric
from ecodiff_bench.core.registry import UnknownNameError
from ecodiff_bench.core.values import Value


def test_value_of_takes_unit_and_direction_from_the_catalog():
    v = Value.of("latency_image_s", 0.12, details={"n": 3})
    assert (v.unit, v.higher_is_better, v.status, v.note) == ("s", False, "measured", "")
    psnr = Value.unavailable_of("psnr_vs_base", "infinite: identical images")
    assert (psnr.unit, psnr.higher_is_better, psnr.value, psnr.status) == ("dB", True, None, "unavailable")
    assert Value.of("energy_ratio_vs_base", 0.9, "estimated").status == "estimated"
    with pytest.raises(UnknownNameError, match="Did you mean: latency_image_s"):
        Value.of("latency_img_s", 0.12)
    with pytest.raises(ValueError, match="say why"):
        Value.unavailable_of("fid", "")
    assert v.with_details({"rounds": 4}).details == {"n": 3, "rounds": 4} and v.details == {"n": 3}


def test_every_quality_metric_of_the_catalog_has_one_builder():
    from ecodiff_bench.run.quality_setup import QUALITY

    assert sorted(QUALITY) == sorted(QUALITY_METRICS)
    assert all(metric(n).combine == "summed states" for n in QUALITY_METRICS)
    with pytest.raises(UnknownNameError, match="Did you mean: clip_score"):
        QUALITY.get("clip_scor")


def test_quality_values_come_from_the_registry_with_the_catalog_unit_and_reasons():
    from ecodiff_bench.quality import ConsistencyVsBase
    from ecodiff_bench.run import quality_setup
    from ecodiff_bench.suite.schema import Evaluation

    wanted = ["ssim_vs_base", "psnr_vs_base", "fid"]
    ev = Evaluation(metrics=wanted, inception_weights="/nonexistent/inception.pth", samples=4)
    built = quality_setup.build(ev, cache=None, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    images, base = torch.rand(4, 3, 16, 16, generator=gen), torch.rand(4, 3, 16, 16, generator=gen)
    out = quality_setup.compute(built, wanted, images, ["a digit"] * 4, base)
    assert list(out) == wanted
    expected = ConsistencyVsBase()
    expected.update(images, base)
    for name, v in expected.compute().items():
        assert out[name] == v  # the same value, note and details as the pair computed together
        assert (v.unit, v.higher_is_better) == (METRICS.get(name).unit, METRICS.get(name).higher_is_better)
    fid = out["fid"]
    assert fid.status == "unavailable" and fid.note.startswith("FileNotFoundError") and fid.unit == ""
    reference = quality_setup.compute(built, wanted, images, ["a digit"] * 4, None)
    assert reference["ssim_vs_base"].note == "not applicable: this is the unpruned reference"
    assert reference["psnr_vs_base"].status == "unavailable"


def _parts(*figures, status="measured"):
    return [{"value": f, "status": status, "note": "" if f is not None else "no NVML"} for f in figures]


def test_ranks_combine_each_figure_by_the_catalog_rule():
    from ecodiff_bench.run.evaluate import _combined

    lat = _combined(Value.of("latency_image_s", 1.0, details={"n": 3}), _parts(1.0, 3.0), [2, 2])
    assert lat.value == 2.0 and lat.details == {
        "n": 3,
        "per_rank": [1.0, 3.0],
        "processes": 2,
        "across_ranks": "mean",
    }
    assert _combined(Value.of("throughput_img_per_s", 2.0), _parts(2.0, 5.0), [1, 1]).value == 7.0
    assert _combined(Value.of("model_peak_bytes", 4.0), _parts(4.0, 9.0), [1, 1]).value == 9.0
    energy = _combined(Value.of("energy_image_j", 1.0), _parts(1.0, 4.0), [1, 3])
    assert energy.value == pytest.approx((1.0 + 4.0 * 3) / 4)  # all ranks' energy over all their images
    mixed = _parts(1.0) + _parts(4.0, status="estimated")
    assert _combined(Value.of("energy_image_j", 1.0), mixed, [1, 1]).status == "estimated"
    # not combined: this rank's own figure, the others' kept
    own = _combined(Value.of("cuda_peak_allocated_bytes", 5.0), _parts(5.0, 6.0), [1, 1])
    assert own.value == 5.0 and "across_ranks" not in own.details and own.details["per_rank"] == [5.0, 6.0]
    gone = _combined(
        Value.of("latency_image_s", 1.0), _parts(1.0) + _parts(None, status="unavailable"), [1, 1]
    )
    assert gone.status == "unavailable" and gone.note == "unavailable on rank 1: no NVML" and gone.unit == "s"
