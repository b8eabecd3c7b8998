"""What ``run`` and ``prune`` check before any work: this machine has the devices the suite asks for,
and the output folder can be written. ``validate`` checks neither (a suite may be validated on a laptop
and run on a GPU server); both raise :class:`~ecodiff_bench.core.errors.PreflightError` naming the field.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ecodiff_bench.core.errors import PreflightError
from ecodiff_bench.core.paths import check_writable_dir
from ecodiff_bench.suite import Suite


def devices_found() -> str:
    """The devices torch can use here, for messages: ``cpu, cuda:0 (NVIDIA H100)``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return ", ".join(found)


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return "this torch build has no CUDA support"
    return "torch finds no usable CUDA device (driver, CUDA_VISIBLE_DEVICES?)"


def check_devices(suite: Suite) -> None:
    """Refuse a model whose ``device`` this machine does not have (``auto`` always runs)."""
    if torch.cuda.is_available():
        return
    problems = [
        f"models[{suite.position(m.key)}].device: {m.device!r} was asked for model {m.key!r}, but "
        f"{_why_no_cuda()} (devices found: {devices_found()}; allowed here: auto, cpu)"
        for m in suite.models
        if m.device == "cuda"
    ]
    if problems:
        raise PreflightError(problems, source=suite.source)


def check_outputs(suite: Suite, out: Path, field: str = "outputs.dir") -> Path:
    """``out`` created if needed and writable; else an error naming ``field``."""
    try:
        return check_writable_dir(out)
    except ValueError as exc:
        raise PreflightError(f"{field}: {exc}", source=suite.source) from None


def preflight(suite: Suite, out: Path, field: str = "outputs.dir") -> Path:
    check_devices(suite)
    return check_outputs(suite, out, field)
