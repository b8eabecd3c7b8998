"""Saving and loading pruned pipelines: safetensors weights, the plan as JSON, a reference to the base model.

Layout of a saved pruned model::

    pruned.json                      format, pipeline class, denoiser attribute, base reference
    plan.json                        the PruningPlan
    <unet|transformer>/config.json   the base architecture's config
    <unet|transformer>/diffusion_pytorch_model.safetensors   the pruned weights
    ...                              optionally every other component (``copy_components=True``)

Loading rebuilds the base architecture on the meta device, applies the plan's surgery to get the pruned
shapes, assigns the saved tensors and hands the denoiser to the stock diffusers pipeline class; other
components come from this directory or from the base reference. Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .plan import PruningPlan
from .surgery import apply_plan
from .targets import architecture
from .trajectory import denoiser_of

FORMAT = "ecodiff-bench-pruned/1"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _denoiser_attr(pipe) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def save(pipe, plan: PruningPlan, path: str | Path, *, base: str | None = None, copy_components: bool = False) -> Path:
    """Write a pruned pipeline. ``base`` (hub id or directory) is where the unpruned components live."""
    path = Path(path)
    if not copy_components and not base:
        raise ValueError("save() needs base= (hub id or directory of the unpruned model) or copy_components=True")
    path.mkdir(parents=True, exist_ok=True)
    attr = _denoiser_attr(pipe)
    denoiser = denoiser_of(pipe)
    if copy_components:
        pipe.save_pretrained(path, safe_serialization=True)
    sub = path / attr
    sub.mkdir(exist_ok=True)
    (sub / "config.json").write_text(json.dumps(dict(denoiser.config), indent=1, default=str))
    state = {k: v.detach().contiguous() for k, v in denoiser.state_dict().items()}
    save_file(state, sub / WEIGHTS, metadata={"format": FORMAT})
    plan.save(path / "plan.json")
    meta = {
        "format": FORMAT,
        "pipeline_class": type(pipe).__name__,
        "denoiser": attr,
        "denoiser_class": type(denoiser).__name__,
        "base": base,
        "components_included": copy_components,
        "dtype": str(next(denoiser.parameters()).dtype).removeprefix("torch."),
        "achieved": plan.achieved(),
    }
    (path / "pruned.json").write_text(json.dumps(meta, indent=1))
    return path


def load_denoiser(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Rebuild the pruned denoiser saved at ``path`` (meta-device build, surgery, then the saved tensors)."""
    import diffusers

    path = Path(path)
    meta = _read_meta(path)
    sub = path / meta["denoiser"]
    cls = getattr(diffusers, meta["denoiser_class"])
    config = json.loads((sub / "config.json").read_text())
    with torch.device("meta"):
        model = cls.from_config(config)
    apply_plan(model, PruningPlan.load(path / "plan.json"))
    state = load_file(sub / WEIGHTS, device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"{sub / WEIGHTS} does not match its plan: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    _check_restored(model)
    model = model.to(device)
    if dtype is not None:
        model = model.to(dtype)
    architecture(model)  # sanity: still a supported denoiser
    return model.eval()


def _check_restored(model: torch.nn.Module) -> None:
    """Non-persistent buffers are not saved: refuse a model that would keep a meta-device placeholder."""
    leftovers = [n for n, b in model.named_buffers() if b.is_meta]
    if leftovers:
        raise ValueError(f"buffers {leftovers[:3]} could not be restored from the saved weights")


def _read_meta(path: Path) -> dict:
    file = path / "pruned.json"
    if not file.exists():
        raise FileNotFoundError(f"{path} is not a saved pruned model: {file} is missing (write one with pruning.save)")
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{file}: unsupported format {meta.get('format')!r} (expected {FORMAT})")
    return meta


def load(
    path: str | Path,
    *,
    base: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    local_files_only: bool = True,
):
    """Load a pruned pipeline as the stock diffusers pipeline class (e.g. StableDiffusionXLPipeline)."""
    import diffusers

    path = Path(path)
    meta = _read_meta(path)
    denoiser = load_denoiser(path, device="cpu", dtype=dtype)
    source = str(path) if meta["components_included"] else (base or meta["base"])
    if not source:
        raise ValueError(f"{path} has no components and no base reference; pass base=")
    pipe_cls = getattr(diffusers, meta["pipeline_class"])
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    pipe = pipe_cls.from_pretrained(source, **{meta["denoiser"]: denoiser}, local_files_only=local_files_only,
                                    **kwargs)
    return pipe.to(device)
