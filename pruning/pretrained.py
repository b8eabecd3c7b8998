"""Pruned denoisers as diffusers models: their config says which units were kept, so stock loading works.

``PrunedUNet2DConditionModel`` and ``PrunedFluxTransformer2DModel`` subclass the diffusers classes. Their
config is the unpruned architecture's plus two keys:

- ``pruned_units``: ``{unit group: kept indices}`` for every group that lost units, indices as compact
  ranges (``"0-3,5,7-9"``; ``""`` when every unit went). Building the model from its config builds the
  base architecture and cuts it to these shapes, so ``from_pretrained`` loads the pruned weights directly.
- ``weights_sha256``: ``{file: sha256}`` of the weight files next to ``config.json``, written by
  ``save_pretrained`` and checked by ``from_pretrained`` on local folders.

A pipeline holding one of these saves with ``model_index.json`` naming ``["pruning", "<class>"]``; diffusers
then loads the directory with ``DiffusionPipeline.from_pretrained`` in any process that has imported
``pruning`` (diffusers resolves a component's library only among modules already imported; no remote code).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel, ModelMixin, UNet2DConditionModel

from . import integrity
from .architectures import ARCHITECTURES, architecture, denoiser_attr, find_groups
from .plans import ModulePlan, PlanError, PruningPlan, read_json
from .surgery import apply_plan

PRUNED_UNITS = "pruned_units"
WEIGHTS_SHA256 = "weights_sha256"
CONFIG = "config.json"


# -- kept indices as text ------------------------------------------------------------------------------------------


def encode_units(kept: list[int]) -> str:
    """Sorted unit indices as ranges: ``[0, 1, 2, 3, 5, 7, 8, 9]`` -> ``"0-3,5,7-9"``."""
    spans: list[list[int]] = []
    for u in sorted(kept):
        if spans and u == spans[-1][1] + 1:
            spans[-1][1] = u
        else:
            spans.append([u, u])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def decode_units(text: str, *, group: str) -> list[int]:
    """Inverse of :func:`encode_units`; a malformed entry is an error naming the group."""
    kept: list[int] = []
    try:
        for span in filter(None, text.split(",")):
            a, _, b = span.partition("-")
            kept.extend(range(int(a), int(b or a) + 1))
    except (ValueError, AttributeError):
        raise ValueError(
            f"{PRUNED_UNITS}[{group!r}] = {text!r}: expected kept indices like '0-3,5,7-9'"
        ) from None
    return kept


def _checked(kept: list[int], n_units: int, group: str) -> list[int]:
    """Kept indices that surgery can use: distinct, increasing, each one of the group's units."""
    if kept != sorted(set(kept)) or (kept and not 0 <= kept[0] <= kept[-1] < n_units):
        raise ValueError(
            f"{PRUNED_UNITS}[{group!r}] = {encode_units(kept)!r}: expected distinct indices in 0..{n_units - 1}"
        )
    return kept


def _plan_for(model: torch.nn.Module, units: dict[str, str]) -> PruningPlan:
    """A plan for the unpruned ``model`` that keeps ``units`` (groups not named keep everything)."""
    groups = {g.name: g for g in find_groups(model)}
    unknown = sorted(set(units) - set(groups))
    if unknown:
        raise ValueError(
            f"{PRUNED_UNITS} names unit groups this architecture does not have, e.g. {unknown[0]!r}"
        )
    modules = {
        name: ModulePlan(
            g.kind,
            g.n_units,
            _checked(decode_units(units[name], group=name), g.n_units, name),
            g.params_per_unit,
            g.params_shared,
        )
        for name, g in groups.items()
        if name in units
    }
    return PruningPlan(modules, method="config", ratio=0.0, architecture=architecture(model))


# -- the classes -----------------------------------------------------------------------------------------------------


def _pruned_init(base: type[ModelMixin]):
    """``__init__`` of a pruned class: the base architecture, then the cut. Its signature is the base's plus
    the two keys, since diffusers reads a config's keys off the signature."""

    def __init__(self, *args, pruned_units: dict | None = None, weights_sha256: dict | None = None, **kwargs):
        base.__init__(self, *args, **kwargs)
        self.register_to_config(pruned_units=pruned_units or {}, weights_sha256=weights_sha256)
        if pruned_units:
            apply_plan(self, _plan_for(self, pruned_units))

    params = [p for p in inspect.signature(base.__init__).parameters.values() if p.kind != p.VAR_KEYWORD]
    extra = [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)
        for k in (PRUNED_UNITS, WEIGHTS_SHA256)
    ]
    __init__.__signature__ = inspect.Signature(params + extra)
    return __init__


class PrunedModelMixin:
    """Loading with weight verification and saving with weight hashes, shared by the pruned classes."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, verify: bool = True, **kwargs):
        folder = Path(str(pretrained_model_name_or_path)).expanduser() / (kwargs.get("subfolder") or "")
        if verify and (folder / CONFIG).is_file():  # a local folder; the hub client checks its own downloads
            verify_folder(folder)
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except ValueError as e:  # a tampered pruned_units: name the file it came from
            if PRUNED_UNITS not in str(e) or isinstance(e, PlanError):
                raise
            raise PlanError(f"{folder / CONFIG}: {e}") from None
        leftovers = [n for n, b in model.named_buffers() if b.is_meta]
        if leftovers:
            raise ValueError(f"{folder}: buffers {leftovers[:3]} are missing from the saved weights")
        return model

    def save_pretrained(self, save_directory, **kwargs):
        """diffusers' ``save_pretrained`` (safetensors only), then the weights' sha256 into ``config.json``."""
        if kwargs.get("push_to_hub"):
            raise ValueError(
                "save_pretrained(push_to_hub=True) would upload before the weight hashes are written; "
                "use model.push_to_hub(repo_id), which saves through this method first"
            )
        if kwargs.get("safe_serialization", True) is False or kwargs.get("use_flashpack"):
            raise ValueError("pruned models are saved as safetensors only (safe_serialization=True)")
        super().save_pretrained(save_directory, **kwargs)
        if kwargs.get("is_main_process", True):
            seal_folder(Path(save_directory))

    @property
    def pruned_units(self) -> dict[str, list[int]]:
        """Kept unit indices (of the unpruned architecture) per group that lost units."""
        return {g: decode_units(t, group=g) for g, t in self.config.get(PRUNED_UNITS, {}).items()}


class PrunedUNet2DConditionModel(PrunedModelMixin, UNet2DConditionModel):
    """An SDXL-family U-Net with attention heads and FFN units removed (see ``pruned_units`` in its config)."""

    __init__ = _pruned_init(UNet2DConditionModel)


class PrunedFluxTransformer2DModel(PrunedModelMixin, FluxTransformer2DModel):
    """A FLUX-family transformer with attention heads and FFN units removed (see ``pruned_units``)."""

    __init__ = _pruned_init(FluxTransformer2DModel)


# model_index.json records a component as [class.__module__ (its top level when that is a module of its own), name]:
# the public ``pruning`` names stay valid whatever this file is called.
for _cls in (PrunedUNet2DConditionModel, PrunedFluxTransformer2DModel, PrunedModelMixin):
    _cls.__module__ = "pruning"

#: architecture name -> pruned class, as pruning.architectures names them
PRUNED_CLASSES: dict[str, type] = {arch.name: globals()[arch.pruned_class] for arch in ARCHITECTURES}


# -- making a cut model one of these --------------------------------------------------------------------------------


def _composed(model: torch.nn.Module, plan: PruningPlan) -> dict[str, str]:
    """``pruned_units`` after ``plan`` (written against ``model``'s current units) on top of its earlier cut."""
    before = model.pruned_units if isinstance(model, PrunedModelMixin) else {}
    units = {g: encode_units(kept) for g, kept in before.items()}
    for name, mp in plan.modules.items():
        if mp.n_removed:
            old = before.get(name, list(range(mp.total)))
            units[name] = encode_units([old[i] for i in mp.kept])
    return units


def adopt(pipe, plan: PruningPlan) -> torch.nn.Module:
    """Record ``plan`` (just applied by surgery) in the denoiser's config and make it a pruned class, in place.

    The pipeline re-registers the denoiser so that its ``model_index.json`` names the pruned class.
    """
    attr = denoiser_attr(pipe)
    model = getattr(pipe, attr)
    units = _composed(model, plan)
    model.__class__ = PRUNED_CLASSES[
        architecture(model)
    ]  # same modules and tensors; the config says how they were cut
    model.register_to_config(pruned_units=units, weights_sha256=None)
    setattr(pipe, attr, model)  # diffusers' pipeline __setattr__ updates the (library, class) entry
    return model


def check_rebuilds(model: torch.nn.Module) -> None:
    """Refuse a pruned model whose config would not rebuild its own shapes (cut behind its config's back)."""
    with torch.device("meta"):
        twin = type(model).from_config(model.config)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    if want != got:
        diff = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
        raise ValueError(
            f"the denoiser's config does not rebuild its shapes ({len(diff)} tensors differ, e.g. {diff[0]}: "
            f"{want.get(diff[0])} vs {got.get(diff[0])}); prune with pruning.apply(pipe, plan), which records the cut"
        )


# -- hashes of a denoiser folder ---------------------------------------------------------------------------------


def _read_config(folder: Path) -> dict:
    return read_json(folder / CONFIG, "model config")


def _write_config(folder: Path, config: dict) -> None:
    (folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def seal_folder(folder: Path) -> None:
    """Write the sha256 of the folder's weight files into its ``config.json``; drop a local ``_name_or_path``."""
    config = _read_config(folder)
    config[WEIGHTS_SHA256] = integrity.record_hashes(folder, integrity.weight_files(folder, recursive=False))
    name = config.get("_name_or_path")
    if name is not None and not integrity.is_hub_id(str(name)):
        del config["_name_or_path"]
    _write_config(folder, config)


def verify_folder(folder: Path) -> None:
    """Refuse a denoiser folder whose weight files differ from the sha256 in its ``config.json``."""
    recorded = _read_config(folder).get(WEIGHTS_SHA256)
    integrity.verify_hashes(
        folder, recorded, integrity.weight_files(folder, recursive=False), source=folder / CONFIG
    )
