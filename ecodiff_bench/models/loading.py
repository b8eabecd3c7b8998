"""Resolving a model to a source (hub id, local directory, random-init) and loading its pipeline.

Loading is offline by default: a local pipeline directory, or a hub id already in the local Hugging Face
cache (``local_files_only=True``). Anything missing raises :class:`ModelNotFoundError`, which says what
was looked for, where, and how to get it; hub tracebacks are not shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import ModelNotFoundError
from .families import MODELS, call_settings, get_family, zoo_dir, zoo_missing_error

RANDOM_INIT = "random-init"
SourceKind = Literal["hub", "local", "random-init"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from. ``name`` is the suite's model name (a family name or a named model)."""

    name: str
    family: str
    kind: SourceKind
    location: str | None  # hub id, absolute directory path, or None for random-init

    def settings(self) -> dict[str, Any]:
        """Default call settings (family defaults, plus the zoo card for digits models)."""
        if self.name in MODELS:
            return call_settings(self.name)
        return dict(get_family(self.family).defaults)


def _looks_like_path(source: str) -> bool:
    if source.startswith(("/", "./", "../", "~", ".\\")) or source in (".", ".."):
        return True
    return not _HUB_ID.match(source) or os.path.exists(os.path.expanduser(source))


def resolve(name_or_family: str, source: str | os.PathLike[str] | None = None) -> ModelSpec:
    """Resolve a model name and an optional source, without loading or touching the network.

    ``source`` None means the model's default: the family's hub id, or the zoo directory of a digits
    model. Otherwise ``"random-init"``, a local directory, or a hub id (``org/name``).
    """
    entry = MODELS.get(name_or_family)  # unknown names raise with a "did you mean"
    family = entry.family
    if source is None:
        if entry.is_zoo:
            return ModelSpec(entry.name, family, "local", str(zoo_dir(entry.name).resolve()))
        return ModelSpec(entry.name, family, "hub", entry.source)
    source = os.fspath(source)
    if source == RANDOM_INIT:
        if entry.is_zoo:
            raise ValueError(
                f"'random-init' builds a published full-size architecture; {entry.name!r} is a digits zoo model. "
                f"Use the family {family!r} with source 'random-init' instead."
            )
        return ModelSpec(entry.name, family, "random-init", None)
    if _looks_like_path(source):
        return ModelSpec(entry.name, family, "local", str(Path(source).expanduser().resolve()))
    return ModelSpec(entry.name, family, "hub", source)


def _hub_cache_dir(cache_dir: str | os.PathLike[str] | None) -> str:
    if cache_dir is not None:
        return os.fspath(cache_dir)
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _download_hint(hub_id: str, gated: bool) -> str:
    hint = (
        f"on a machine with network access run `hf download {hub_id}` (older huggingface_hub: "
        f"`huggingface-cli download {hub_id}`) and copy the cache here (or point HF_HUB_CACHE at it), "
        "or pass a local pipeline directory as the model source"
    )
    if gated:
        hint += f"; {hub_id} is gated: accept its licence on the hub and log in (`hf auth login`) first"
    return (
        hint + ". `random-init` builds the architecture with random weights (speed, memory and energy only)."
    )


def is_cached(hub_id: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether a pipeline's model_index.json is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "model_index.json", cache_dir=cache_dir)
    return isinstance(found, str)


def is_available(spec: ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`load_pipeline` could load ``spec`` offline (checks files only)."""
    if spec.kind == "random-init":
        return True
    if spec.kind == "local":
        return (Path(spec.location) / "model_index.json").is_file()
    return is_cached(spec.location, cache_dir)


def _check_local(spec: ModelSpec) -> None:
    path = Path(spec.location)
    if (path / "model_index.json").is_file():
        return
    if MODELS.get(spec.name).is_zoo and path == zoo_dir(spec.name).resolve():
        raise zoo_missing_error(spec.name)
    hint = (
        "pass the directory of a saved diffusers pipeline (one with model_index.json, as written by "
        "`pipeline.save_pretrained(dir)`), or a hub id that is in the local cache"
    )
    problem = (
        "does not exist"
        if not path.exists()
        else "is not a diffusers pipeline directory (no model_index.json)"
    )
    raise ModelNotFoundError(
        f"Model {spec.name!r} ({spec.family}): directory {path} {problem}.",
        looked_for=str(path / "model_index.json"),
        where=str(path),
        hint=hint,
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0].split(" Please check out the root cause")[0] if lines else ""
    return f"{type(exc).__name__}: {text}"


def _dtype_kwarg() -> str:
    """Name of from_pretrained's dtype argument: ``dtype`` in recent diffusers, ``torch_dtype`` before."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"


def load_pipeline(
    name_or_family: str,
    source: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    offline: bool = True,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
):
    """Load (or, for ``source="random-init"``, build) the pipeline of a model.

    ``offline=True`` (default) never contacts the hub: local directories and the local cache only.
    ``offline=False`` lets diffusers download a hub id. ``device="meta"`` is allowed for random-init
    only (parameter accounting). ``seed`` seeds random-init weights.
    """
    spec = resolve(name_or_family, source)
    fam = get_family(spec.family)
    if spec.kind == "random-init":
        from .random_init import build_random_pipeline

        pipe = build_random_pipeline(fam.name, device=device, dtype=dtype, seed=seed)
        from .generation import tag_pipeline

        tag_pipeline(pipe, family=fam.name, model=spec.name, source=RANDOM_INIT)
        return pipe
    if torch.device(device).type == "meta":
        raise ValueError("device='meta' is only supported with source='random-init'")

    if spec.kind == "local":
        _check_local(spec)
        location, where = spec.location, spec.location
        hint = "check the directory's files (it must load with diffusers' from_pretrained)"
    else:
        where = _hub_cache_dir(cache_dir)
        hint = _download_hint(spec.location, fam.gated and spec.location == fam.hub_id)
        location = spec.location
        if offline and not is_cached(spec.location, cache_dir):
            raise ModelNotFoundError(
                f"Model {spec.name!r} ({spec.family}): hub id {spec.location!r} is not in the local Hugging Face "
                "cache and hub downloads are off (offline)."
                + (
                    ""
                    if spec.location == fam.hub_id
                    else " (For a local directory, give a path starting with / or ./.)"
                ),
                looked_for=f"{spec.location} (model_index.json and component weights)",
                where=where,
                hint=hint,
            )

    from huggingface_hub.errors import HfHubHTTPError

    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype, "local_files_only": offline or spec.kind == "local"}
    kwargs["use_safetensors"] = True  # never unpickle: a directory with only .bin weights is refused
    if cache_dir is not None and spec.kind == "hub":
        kwargs["cache_dir"] = os.fspath(cache_dir)
    try:
        pipe = fam.pipeline_cls().from_pretrained(location, **kwargs)
    except (OSError, HfHubHTTPError) as exc:
        # diffusers reports missing files and failed downloads as OSError; keep the reason, drop the traceback
        raise ModelNotFoundError(
            f"Model {spec.name!r} ({spec.family}) could not be loaded from {location}: {_first_line(exc)}",
            looked_for=location,
            where=where,
            hint=hint,
        ) from None
    pipe = pipe.to(device)
    from .generation import tag_pipeline

    tag_pipeline(pipe, family=fam.name, model=spec.name, source=location)
    return pipe
