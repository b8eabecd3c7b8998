"""What ``run`` and ``prune`` check before any work: this machine has the devices the plan's models ask
for, and the output folder can be written. ``validate`` checks neither (a suite may be validated on a
laptop and run on a GPU server); both raise :class:`~ecodiff_bench.core.errors.PreflightError` naming the
field.
"""

from __future__ import annotations

import torch

from ecodiff_bench.core.errors import PreflightError
from ecodiff_bench.core.paths import check_writable_dir
from ecodiff_bench.suite import RunPlan


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


def check_devices(plan: RunPlan) -> None:
    """Refuse a model whose ``device`` this machine does not have (``auto`` always runs)."""
    if torch.cuda.is_available():
        return
    problems = [
        f"{plan.model_field(key, 'device')}: 'cuda' was asked for model {key!r}, but {_why_no_cuda()} "
        f"(devices found: {devices_found()}; allowed here: auto, cpu)"
        for key, specs in plan.by_model()
        if specs[0].model_spec.device == "cuda"
    ]
    if problems:
        raise PreflightError(problems, source=plan.source)


def check_outputs(plan: RunPlan) -> None:
    """The output folder created if needed and writable; else an error naming where it came from."""
    try:
        check_writable_dir(plan.layout.root)
    except ValueError as exc:
        raise PreflightError(f"{plan.layout.root_field}: {exc}", source=plan.source) from None


def preflight(plan: RunPlan) -> None:
    check_devices(plan)
    check_outputs(plan)
