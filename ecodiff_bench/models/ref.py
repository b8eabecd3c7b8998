"""Where a model's weights come from: :data:`ModelRef`, one typed reference in four kinds.

* :class:`ZooRef`        a digits zoo model, shipped under ``ecodiff_bench/zoo/models/<name>``
* :class:`HubRef`        a Hugging Face Hub repository, at a ``revision`` (branch, tag or commit) and with
                         a weight ``variant`` (``fp16`` files), from the local cache unless downloads are on
* :class:`RandomInitRef` the family's published architecture with random weights (speed, memory, energy)
* :class:`LocalRef`      a diffusers pipeline folder on disk (``save_pretrained``), optionally a variant

The model registry gives every named model its default reference (:attr:`NamedModel.ref`); a suite's
``models[]`` entry spells one in YAML and hands it over as ``entry.ref``; :func:`load_pipeline` takes it.
Torch-free, so that suites validate without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

RANDOM_INIT = "random-init"


class _Ref(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ZooRef(_Ref):
    """A model of the project's digits zoo (its folder is :func:`ecodiff_bench.models.zoo_dir`)."""

    kind: Literal["zoo"] = "zoo"
    name: str

    def text(self) -> str:
        return f"zoo {self.name}"


class HubRef(_Ref):
    """A Hugging Face Hub repository; ``revision`` and ``variant`` go to diffusers' ``from_pretrained``."""

    kind: Literal["hub"] = "hub"
    repo: str
    revision: str | None = None
    variant: str | None = None

    def text(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"hub {self.repo}{at}" + (f" (variant {self.variant})" if self.variant else "")


class RandomInitRef(_Ref):
    """The published architecture with random weights (no download, no quality metrics)."""

    kind: Literal["random-init"] = RANDOM_INIT

    def text(self) -> str:
        return RANDOM_INIT


class LocalRef(_Ref):
    """A diffusers pipeline folder; a relative ``path`` is relative to the working directory."""

    kind: Literal["local"] = "local"
    path: str
    variant: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def text(self) -> str:
        return f"local {self.path}" + (f" (variant {self.variant})" if self.variant else "")


ModelRef = Annotated[ZooRef | HubRef | RandomInitRef | LocalRef, Field(discriminator="kind")]
