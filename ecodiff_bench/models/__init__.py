"""Model families, named models, where their weights come from (:data:`ModelRef`: zoo, hub, random-init,
local folder), loading and seeded generation.

Importing this package is cheap (no torch): the registries, references, errors and names load eagerly;
the loading, random-init and generation functions load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ModelNotFoundError
from .families import (
    FAMILIES,
    MODELS,
    Family,
    NamedModel,
    call_settings,
    family_names,
    get_family,
    get_model,
    model_names,
    zoo_card,
    zoo_dir,
)
from .ref import RANDOM_INIT, HubRef, LocalRef, ModelRef, RandomInitRef, ZooRef

_LAZY = {
    "source_ref": "loading",
    "pretrained_kwargs": "loading",
    "load_pipeline": "loading",
    "is_available": "loading",
    "is_cached": "loading",
    "build_component": "random_init",
    "build_random_pipeline": "random_init",
    "published_config": "random_init",
    "expected_params": "random_init",
    "component_names": "random_init",
    "tiny_overrides": "random_init",
    "tiny_pipeline": "random_init",
    "generate": "generation",
    "family_of": "generation",
    "origin": "generation",
    "pipe_settings": "generation",
    "tag_pipeline": "generation",
    "clip_tokenizer": "tokenizers",
    "t5_tokenizer": "tokenizers",
}

if TYPE_CHECKING:  # pragma: no cover
    from .generation import family_of, generate, origin, pipe_settings, tag_pipeline
    from .loading import is_available, is_cached, load_pipeline, pretrained_kwargs, source_ref
    from .random_init import (
        build_component,
        build_random_pipeline,
        component_names,
        expected_params,
        published_config,
        tiny_overrides,
        tiny_pipeline,
    )
    from .tokenizers import clip_tokenizer, t5_tokenizer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "Family",
    "HubRef",
    "LocalRef",
    "MODELS",
    "ModelNotFoundError",
    "ModelRef",
    "NamedModel",
    "RANDOM_INIT",
    "RandomInitRef",
    "ZooRef",
    "build_component",
    "build_random_pipeline",
    "call_settings",
    "clip_tokenizer",
    "component_names",
    "expected_params",
    "family_names",
    "family_of",
    "generate",
    "get_family",
    "get_model",
    "is_available",
    "is_cached",
    "load_pipeline",
    "model_names",
    "origin",
    "pipe_settings",
    "pretrained_kwargs",
    "published_config",
    "source_ref",
    "t5_tokenizer",
    "tag_pipeline",
    "tiny_overrides",
    "tiny_pipeline",
    "zoo_card",
    "zoo_dir",
]
