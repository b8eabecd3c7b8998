"""A suite's ``models``: which model, from which source (zoo, hub, random-init or a local directory), and
its call settings. ``- sdxl`` is short for ``- {name: sdxl}`` with the model's default source.

Each entry is the suite's YAML spelling of a :data:`~ecodiff_bench.models.ref.ModelRef` (``source``,
``hub_id``, ``revision``, ``variant``) beside the model's name, call settings, dtype and device; its
:attr:`ref` is the reference the loader takes. What an entry dumps is part of its records' ids: a field
added later (``variant``) is left out of the dump while unset, so that existing ids stay as they were.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator, model_serializer, model_validator

from ecodiff_bench.core.record import CALL_SETTINGS
from ecodiff_bench.core.registry import suggest
from ecodiff_bench.models.ref import HubRef, LocalRef, ModelRef, RandomInitRef, ZooRef
from ecodiff_bench.suite.catalog import (
    SOURCE_KEYWORDS,
    family_of,
    is_digits,
    known_model,
    known_models,
    model_names,
)
from ecodiff_bench.suite.problems import Problems, StrictModel, fail, unknown_message

LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VARIANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
#: Fields added after record ids were fixed: left out of an entry's dump while unset.
_OMITTED_WHEN_UNSET = ("variant",)
Dtype = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]


class _ModelBase(StrictModel):
    """One model to benchmark; ``None`` call settings mean the model's own default."""

    name: str
    label: str | None = Field(None, description="name used in records and reports (default: name)")
    steps: int | None = Field(None, gt=0)
    guidance: float | None = Field(None, ge=0)
    height: int | None = Field(None, gt=0)
    width: int | None = Field(None, gt=0)
    max_sequence_length: int | None = Field(None, gt=0)
    dtype: Dtype | None = None
    device: Device = "auto"

    @field_validator("name")
    @classmethod
    def _known_name(cls, v: str) -> str:
        if v not in known_models():
            raise fail(unknown_message("model", v, model_names()), allowed=model_names())
        return v

    @field_validator("label")
    @classmethod
    def _label_is_a_name(cls, v: str | None) -> str | None:
        # A label names the model's folders under outputs.dir: a path in it would write elsewhere.
        if v is not None and (not LABEL_PATTERN.fullmatch(v) or ".." in v):
            raise fail(
                "a label is a name (it names folders under outputs.dir)",
                allowed="1-64 letters, digits, '.', '_' and '-', starting with a letter or digit; no '..'",
            )
        return v

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise fail("must be a multiple of 8", allowed="multiples of 8, e.g. 512, 1024")
        return v

    def call_overrides(self) -> dict[str, Any]:
        """The call settings this suite sets (steps, guidance, ...); the rest are the model's."""
        return {f: getattr(self, f) for f in CALL_SETTINGS if getattr(self, f) is not None}

    @property
    def key(self) -> str:
        """The model's name in records: its label, or its name."""
        return self.label or self.name

    @property
    def family(self) -> str:
        return family_of(self.name)

    @property
    def ref(self) -> ModelRef:
        """Where the weights come from, as the loader takes it."""
        raise NotImplementedError

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict[str, Any]:
        data = handler(self)
        for key in _OMITTED_WHEN_UNSET:
            if key in data and data[key] is None:
                del data[key]
        return data


def _check_variant(v: str | None) -> str | None:
    if v is not None and not VARIANT_PATTERN.fullmatch(v):
        raise fail(
            "a variant names weight files (unet/diffusion_pytorch_model.<variant>.safetensors)",
            allowed="a short name such as fp16, bf16 (letters, digits, '_', '-')",
        )
    return v


class ZooModel(_ModelBase):
    """A model of the project's digits zoo (shipped weights)."""

    source: Literal["zoo"] = "zoo"

    @model_validator(mode="after")
    def _only_digits(self) -> ZooModel:
        if not is_digits(self.name):
            raise Problems.one(
                ("source",),
                f"the zoo only holds digits models, not {self.name!r}",
                got="zoo",
                allowed="hub, random-init, or a local path",
            )
        return self

    @property
    def ref(self) -> ZooRef:
        return ZooRef(name=self.name)


class HubModel(_ModelBase):
    """Weights from the Hugging Face Hub (or its local cache when ``allow_hub`` is false)."""

    source: Literal["hub"] = "hub"
    hub_id: str | None = Field(None, description="repository id; default: the family's official one")
    revision: str | None = Field(None, description="branch, tag or commit of the repository")
    variant: str | None = Field(None, description="weight files variant, e.g. fp16 (SDXL's half weights)")

    _variant = field_validator("variant")(_check_variant)

    @model_validator(mode="after")
    def _hub_id_for_digits(self) -> HubModel:
        if self.hub_id is None and known_model(self.name).is_zoo:
            raise Problems.one(
                ("hub_id",), f"required: {self.name!r} has no official hub repository", got=None
            )
        return self

    @property
    def resolved_hub_id(self) -> str:
        return self.hub_id or known_model(self.name).ref.repo

    @property
    def ref(self) -> HubRef:
        return HubRef(repo=self.resolved_hub_id, revision=self.revision, variant=self.variant)


class RandomInitModel(_ModelBase):
    """The full architecture with random weights (speed, memory and energy only)."""

    source: Literal["random-init"] = "random-init"

    @property
    def ref(self) -> RandomInitRef:
        return RandomInitRef()


class LocalModel(_ModelBase):
    """A pipeline saved in a local directory (``source`` is the path)."""

    source: str
    variant: str | None = Field(None, description="weight files variant, e.g. fp16")

    _variant = field_validator("variant")(_check_variant)

    @property
    def path(self) -> Path:
        return Path(self.source).expanduser()

    @property
    def ref(self) -> LocalRef:
        return LocalRef(path=self.source, variant=self.variant)


def looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.startswith((".", "~"))


def _model_tag(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        v = v.model_dump()
    if not isinstance(v, dict):
        return None
    src = v.get("source")
    if src is None:
        name = v.get("name")
        known = known_models().get(name) if isinstance(name, str) else None
        return known.ref.kind if known else "hub"
    return src if src in SOURCE_KEYWORDS else "path"


def model_shorthand(v: Any, index: int) -> Any:
    """``- sdxl`` is short for ``- {name: sdxl}``; a source that is neither a keyword nor a path is refused."""
    if isinstance(v, str):
        return {"name": v}
    if isinstance(v, dict) and "source" in v:
        src = v["source"]
        if not isinstance(src, str) or (src not in SOURCE_KEYWORDS and not looks_like_path(src)):
            hint = suggest(str(src), SOURCE_KEYWORDS, cutoff=0.5)
            raise Problems.one(
                (index, "source"),
                "unknown source" + ("." + hint if hint else ""),
                got=src,
                allowed="zoo, hub, random-init, or a local path such as ./my-model",
            )
    return v


ModelSpec = Annotated[
    Annotated[ZooModel, Tag("zoo")]
    | Annotated[HubModel, Tag("hub")]
    | Annotated[RandomInitModel, Tag("random-init")]
    | Annotated[LocalModel, Tag("path")],
    Discriminator(_model_tag),
]
