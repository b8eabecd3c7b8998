"""Model families and named models (torch-free).

A *family* is an architecture plus its published sampling recipe (``sdxl``, ``sdxl-turbo``, ``flux-dev``,
``flux-schnell``). A *named model* is what a suite refers to: every family is also a model (its default
source is the family's hub id), and the digits zoo adds ``digits-*`` models whose default source is a
directory shipped under ``ecodiff_bench/zoo/models/`` and whose call settings come from its zoo card.

Call settings have one spelling everywhere (:data:`~ecodiff_bench.core.record.CALL_SETTINGS`: ``steps``,
``guidance``, ``height``, ``width``, ``max_sequence_length``): in suites, family defaults, records and
pruning's ``sampling``. A family turns them into its pipeline's arguments (``num_inference_steps``,
``guidance_scale``, ...) at the call, in :meth:`Family.pipeline_arguments`, and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ecodiff_bench.core.record import CALL_SETTINGS
from ecodiff_bench.core.registry import Registry

from .errors import ModelNotFoundError
from .ref import HubRef, ZooRef

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# What follows from the architecture: the diffusers pipeline class, the denoiser's attribute name, and the
# pipeline's argument for each call setting it takes.
_ARCH_PIPELINES = {
    "sdxl": ("StableDiffusionXLPipeline", "unet"),
    "flux": ("FluxPipeline", "transformer"),
}
_PIPELINE_ARGUMENTS = {
    "sdxl": {
        "steps": "num_inference_steps",
        "guidance": "guidance_scale",
        "height": "height",
        "width": "width",
    },
    "flux": {
        "steps": "num_inference_steps",
        "guidance": "guidance_scale",
        "height": "height",
        "width": "width",
        "max_sequence_length": "max_sequence_length",
    },
}


@dataclass(frozen=True)
class Family:
    name: str
    arch: str  # "sdxl" (UNet) or "flux" (MMDiT); what the pruning targets dispatch on
    pipeline_class: str  # class name in diffusers
    hub_id: str
    denoiser_attr: str  # "unet" | "transformer"
    step_distilled: bool
    defaults: Mapping[str, Any] = field(default_factory=dict)  # call settings (CALL_SETTINGS names)
    config_file: str = ""  # file in ecodiff_bench/configs with the published component configs
    gated: bool = False  # hub repository needs an accepted licence and a token
    description: str = ""

    def pipeline_cls(self) -> type:
        import diffusers

        return getattr(diffusers, self.pipeline_class)

    def pipeline_arguments(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Call settings -> keyword arguments of the pipeline. Settings the pipeline does not take are
        dropped (FLUX's ``max_sequence_length`` for SDXL); other keys pass through unchanged."""
        names = _PIPELINE_ARGUMENTS[self.arch]
        out: dict[str, Any] = {}
        for key, value in settings.items():
            if key in CALL_SETTINGS:
                if key in names:
                    out[names[key]] = value
            elif key in names.values():
                short = next(k for k, v in names.items() if v == key)
                raise ValueError(f"call setting {key!r}: spell it {short!r} (the name used everywhere here)")
            else:
                out[key] = value
        return out

    def settings_from_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Pipeline keyword arguments (a zoo card's ``call_kwargs``) -> call settings."""
        short = {v: k for k, v in _PIPELINE_ARGUMENTS[self.arch].items()}
        unknown = sorted(set(arguments) - set(short))
        if unknown:
            raise ValueError(f"{self.name}: not call settings of {self.pipeline_class}: {unknown}")
        return {short[k]: v for k, v in arguments.items()}

    def published_config(self) -> dict[str, Any]:
        """The embedded published configs of every pipeline component (a fresh copy)."""
        with open(CONFIG_DIR / self.config_file, encoding="utf-8") as f:
            return json.load(f)


@dataclass(frozen=True)
class NamedModel:
    name: str
    family: str
    ref: ZooRef | HubRef  # where its weights come from by default
    description: str = ""

    @property
    def is_zoo(self) -> bool:
        return isinstance(self.ref, ZooRef)


FAMILIES: Registry[Family] = Registry("family")
MODELS: Registry[NamedModel] = Registry("model")


def _add_family(
    name: str,
    arch: str,
    hub_id: str,
    *,
    step_distilled: bool,
    steps: int,
    guidance: float,
    size: int,
    description: str,
    max_sequence_length: int | None = None,
    gated: bool = False,
) -> None:
    """Register a family (config file ``<name>.json``) and the named model of the same name (its hub id)."""
    pipeline_class, denoiser_attr = _ARCH_PIPELINES[arch]
    defaults: dict[str, Any] = {"steps": steps, "guidance": guidance, "height": size, "width": size}
    if max_sequence_length is not None:
        defaults["max_sequence_length"] = max_sequence_length
    fam = Family(
        name=name,
        arch=arch,
        pipeline_class=pipeline_class,
        hub_id=hub_id,
        denoiser_attr=denoiser_attr,
        step_distilled=step_distilled,
        defaults=MappingProxyType(defaults),
        config_file=f"{name}.json",
        gated=gated,
        description=description,
    )
    FAMILIES.register(fam.name, fam, help=fam.description)
    MODELS.register(
        fam.name,
        NamedModel(fam.name, fam.name, HubRef(repo=fam.hub_id), fam.description),
        help=fam.description,
    )


_add_family(
    "sdxl",
    "sdxl",
    "stabilityai/stable-diffusion-xl-base-1.0",
    step_distilled=False,
    steps=50,
    guidance=5.0,
    size=1024,
    description="Stable Diffusion XL base 1.0: UNet 2.57B params, 50 steps, CFG 5.0, 1024x1024",
)
_add_family(
    "sdxl-turbo",
    "sdxl",
    "stabilityai/sdxl-turbo",
    step_distilled=True,
    steps=4,
    guidance=0.0,
    size=512,
    description="SDXL-Turbo (adversarially distilled SDXL): 1-4 steps, no CFG, 512x512",
)
_add_family(
    "flux-dev",
    "flux",
    "black-forest-labs/FLUX.1-dev",
    step_distilled=False,
    steps=50,
    guidance=3.5,
    size=1024,
    max_sequence_length=512,
    gated=True,
    description="FLUX.1-dev (guidance-distilled): transformer 11.9B params, 50 steps, guidance 3.5, 1024x1024",
)
_add_family(
    "flux-schnell",
    "flux",
    "black-forest-labs/FLUX.1-schnell",
    step_distilled=True,
    steps=4,
    guidance=0.0,
    size=1024,
    max_sequence_length=256,
    description="FLUX.1-schnell (timestep-distilled): 4 steps, no guidance, max_sequence_length 256",
)

for _name, _family in (
    ("digits-sdxl", "sdxl"),
    ("digits-sdxl-turbo", "sdxl-turbo"),
    ("digits-flux", "flux-dev"),
    ("digits-flux-schnell", "flux-schnell"),
):
    MODELS.register(
        _name,
        NamedModel(_name, _family, ZooRef(name=_name), f"digits zoo model with the {_family} architecture"),
        help=f"digits zoo model ({_family} architecture, trained on scikit-learn digits)",
    )


def get_family(name: str) -> Family:
    """A family by its name, or the family of a named model (``digits-flux`` -> ``flux-dev``)."""
    if name in FAMILIES:
        return FAMILIES.get(name)
    return FAMILIES.get(MODELS.get(name).family)  # an unknown name raises "Unknown model ..., did you mean"


def get_model(name: str) -> NamedModel:
    return MODELS.get(name)


# --------------------------------------------------------------------------- digits zoo


def zoo_dir(name: str) -> Path:
    """The directory a digits zoo model lives in (it may not exist yet)."""
    from ecodiff_bench.zoo import MODELS_DIR

    return MODELS_DIR / name


def zoo_missing_error(name: str) -> ModelNotFoundError:
    directory = zoo_dir(name)
    return ModelNotFoundError(
        f"Digits zoo model {name!r} is not built.",
        looked_for=f"{name} (a diffusers pipeline directory with model_index.json and zoo_card.json)",
        where=str(directory),
        hint=f"run `ecodiff-bench zoo train {name}` to build it, or pass a local pipeline directory as the source",
    )


def zoo_card(name: str) -> dict[str, Any]:
    """The zoo card of a digits model; raises ModelNotFoundError if the model is not built."""
    from ecodiff_bench.zoo import ZooModelMissing, card

    try:
        return dict(card(name))
    except ZooModelMissing:
        raise zoo_missing_error(name) from None


def _card_settings(name: str, family: str) -> dict[str, Any]:
    card = zoo_card(name)
    if card.get("family", family) != family:
        raise ValueError(f"zoo card of {name!r} says family {card['family']!r}, the registry says {family!r}")
    arguments = card.get("call_kwargs")
    if not isinstance(arguments, Mapping):
        raise ValueError(f"zoo card of {name!r} has no 'call_kwargs' mapping (keys: {sorted(card)})")
    return FAMILIES.get(family).settings_from_arguments(arguments)


def call_settings(model: str) -> dict[str, Any]:
    """Default call settings of a model: family defaults, overridden by its zoo card."""
    entry = MODELS.get(model)
    settings = dict(FAMILIES.get(entry.family).defaults)
    if entry.is_zoo:
        settings.update(_card_settings(entry.name, entry.family))
    return settings


def family_names() -> list[str]:
    return FAMILIES.names()


def model_names() -> list[str]:
    return MODELS.names()
