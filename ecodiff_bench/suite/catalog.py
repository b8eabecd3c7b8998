"""What a suite may name besides methods: models (from the model registry), builtin prompt sets and
reference sets, model sources, and the builtin suites."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ecodiff_bench.core.registry import UnknownNameError

if TYPE_CHECKING:
    from ecodiff_bench.models import NamedModel


def _builtin_suites_dir() -> Path:
    """The checkout's ``suites/`` when running from a source tree, else the copy an installed wheel carries
    as package data (pyproject maps ``suites/`` to ``ecodiff_bench/suites``)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "suites").is_dir():
        return checkout / "suites"
    return Path(str(resources.files("ecodiff_bench") / "suites"))


SUITES_DIR = _builtin_suites_dir()

BUILTIN_PROMPT_SETS = ("digits",)
BUILTIN_REFERENCES = ("digits-heldout",)
SOURCE_KEYWORDS = ("zoo", "hub", "random-init")


@functools.lru_cache(maxsize=1)
def known_models() -> dict[str, NamedModel]:
    """Model names a suite may use, with their family and default source (the model registry, torch-free)."""
    from ecodiff_bench.models import MODELS

    return {name: MODELS.get(name) for name in MODELS.names()}


def model_names() -> list[str]:
    """Names a suite may use under ``models[].name``."""
    return list(known_models())


def known_model(name: str) -> NamedModel:
    if name not in known_models():
        raise UnknownNameError("model", name, model_names())
    return known_models()[name]


def family_of(model_name: str) -> str:
    return known_model(model_name).family


def is_digits(model_name: str) -> bool:
    """A model of the digits zoo (whose default source is the zoo)."""
    m = known_models().get(model_name)
    return m is not None and m.is_zoo


def builtin_suites() -> dict[str, Path]:
    """Builtin suite names (``digits``, ``sdxl``, ...) -> their files."""
    if not SUITES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SUITES_DIR.glob("*.yaml"))}
