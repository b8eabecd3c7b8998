"""Loading a model's pipeline from its :data:`~ecodiff_bench.models.ref.ModelRef`.

Loading is offline by default: a local pipeline directory, a zoo model, or a hub repository already in
the local Hugging Face cache (``local_files_only=True``). Anything missing raises
:class:`ModelNotFoundError`, which says what was looked for, where, and how to get it; hub tracebacks are
not shown. A hub reference's ``revision`` and a ``variant`` reach diffusers' ``from_pretrained``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from .errors import ModelNotFoundError
from .families import MODELS, Family, NamedModel, get_family, zoo_dir, zoo_missing_error
from .ref import RANDOM_INIT, HubRef, LocalRef, ModelRef, RandomInitRef, ZooRef

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_REFS = (ZooRef, HubRef, RandomInitRef, LocalRef)


def source_ref(model: str, source: ModelRef | str | os.PathLike[str] | None = None) -> ModelRef:
    """The reference to load ``model`` from: its registry default for ``None``, a :data:`ModelRef` as
    it is, :class:`RandomInitRef` for ``"random-init"``, else a local folder (hub repositories are given
    as :class:`HubRef`). Touches neither the disk nor the network."""
    entry = MODELS.get(model)  # unknown names raise with a "did you mean"
    if source is None:
        return entry.ref
    if isinstance(source, _REFS):
        ref = source
    elif os.fspath(source) == RANDOM_INIT:
        ref = RandomInitRef()
    else:
        ref = LocalRef(path=os.fspath(source))
    if isinstance(ref, RandomInitRef) and entry.is_zoo:
        raise ValueError(
            f"'random-init' builds a published full-size architecture; {entry.name!r} is a digits zoo model. "
            f"Use the family {entry.family!r} with source 'random-init' instead."
        )
    if isinstance(ref, ZooRef) and ref.name != entry.name:
        raise ValueError(f"zoo reference {ref.name!r} does not hold model {entry.name!r}")
    return ref


def _hub_cache_dir(cache_dir: str | os.PathLike[str] | None) -> str:
    if cache_dir is not None:
        return os.fspath(cache_dir)
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _download_hint(ref: HubRef, gated: bool) -> str:
    command = ref.repo + (f" --revision {ref.revision}" if ref.revision else "")
    hint = (
        f"on a machine with network access run `hf download {command}` (older huggingface_hub: "
        f"`huggingface-cli download {command}`) and copy the cache here (or point HF_HUB_CACHE at it), "
        "or pass a local pipeline directory as the model source"
    )
    if gated:
        hint += f"; {ref.repo} is gated: accept its licence on the hub and log in (`hf auth login`) first"
    return (
        hint + ". `random-init` builds the architecture with random weights (speed, memory and energy only)."
    )


def is_cached(
    hub_id: str, cache_dir: str | os.PathLike[str] | None = None, revision: str | None = None
) -> bool:
    """Whether a pipeline's model_index.json (at ``revision``) is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "model_index.json", cache_dir=cache_dir, revision=revision)
    return isinstance(found, str)


def is_available(
    model: str,
    source: ModelRef | str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Whether :func:`load_pipeline` could load ``model`` from ``source`` offline (checks files only)."""
    ref = source_ref(model, source)
    if isinstance(ref, RandomInitRef):
        return True
    if isinstance(ref, HubRef):
        return is_cached(ref.repo, cache_dir, ref.revision)
    folder = zoo_dir(ref.name) if isinstance(ref, ZooRef) else ref.folder
    return (folder / "model_index.json").is_file()


def _check_local(entry: NamedModel, ref: LocalRef) -> None:
    path = ref.folder
    if (path / "model_index.json").is_file():
        return
    hint = (
        "pass the directory of a saved diffusers pipeline (one with model_index.json, as written by "
        "`pipeline.save_pretrained(dir)`), or a hub repository as HubRef(repo=...)"
    )
    if _HUB_ID.match(ref.path) and not path.exists():
        hint += f" ({ref.path!r} reads like a hub id: a plain string is a local folder here)"
    problem = (
        "does not exist"
        if not path.exists()
        else "is not a diffusers pipeline directory (no model_index.json)"
    )
    raise ModelNotFoundError(
        f"Model {entry.name!r} ({entry.family}): directory {path} {problem}.",
        looked_for=str(path / "model_index.json"),
        where=str(path),
        hint=hint,
    )


def _locate(entry: NamedModel, fam: Family, ref: ModelRef, offline: bool, cache_dir) -> tuple[str, str, str]:
    """(what from_pretrained loads, where it looks, the hint for a failure), once the files are checked."""
    if isinstance(ref, ZooRef):
        folder = zoo_dir(ref.name).resolve()
        if not (folder / "model_index.json").is_file():
            raise zoo_missing_error(ref.name)
        return str(folder), str(folder), "check the directory's files (it must load with from_pretrained)"
    if isinstance(ref, LocalRef):
        _check_local(entry, ref)
        return (
            str(ref.folder),
            str(ref.folder),
            "check the directory's files (it must load with from_pretrained)",
        )
    where = _hub_cache_dir(cache_dir)
    hint = _download_hint(ref, fam.gated and ref.repo == fam.hub_id)
    if offline and not is_cached(ref.repo, cache_dir, ref.revision):
        at = f" at revision {ref.revision!r}" if ref.revision else ""
        raise ModelNotFoundError(
            f"Model {entry.name!r} ({entry.family}): hub id {ref.repo!r}{at} is not in the local Hugging Face "
            "cache and hub downloads are off (offline).",
            looked_for=f"{ref.repo} (model_index.json and component weights)",
            where=where,
            hint=hint,
        )
    return ref.repo, where, hint


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0].split(" Please check out the root cause")[0] if lines else ""
    return f"{type(exc).__name__}: {text}"


def _dtype_kwarg() -> str:
    """Name of from_pretrained's dtype argument: ``dtype`` in recent diffusers, ``torch_dtype`` before."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"


def pretrained_kwargs(ref: ModelRef, dtype: torch.dtype, offline: bool, cache_dir=None) -> dict[str, Any]:
    """diffusers' ``from_pretrained`` arguments for ``ref``: the dtype, offline or not, safetensors only
    (never unpickle: a folder with only .bin weights is refused), the hub's revision and the variant."""
    hub = isinstance(ref, HubRef)
    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype, "local_files_only": offline or not hub}
    kwargs["use_safetensors"] = True
    if hub and cache_dir is not None:
        kwargs["cache_dir"] = os.fspath(cache_dir)
    if hub and ref.revision is not None:
        kwargs["revision"] = ref.revision
    if getattr(ref, "variant", None) is not None:
        kwargs["variant"] = ref.variant
    return kwargs


def load_pipeline(
    model: str,
    source: ModelRef | str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    offline: bool = True,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
):
    """Load (or, for random-init, build) the pipeline of ``model`` from ``source`` (see :func:`source_ref`).

    ``offline=True`` (default) never contacts the hub: local directories and the local cache only.
    ``offline=False`` lets diffusers download a hub repository. ``device="meta"`` is allowed for
    random-init only (parameter accounting). ``seed`` seeds random-init weights.
    """
    from .generation import tag_pipeline

    ref = source_ref(model, source)
    entry = MODELS.get(model)
    fam = get_family(entry.family)
    if isinstance(ref, RandomInitRef):
        from .random_init import build_random_pipeline

        pipe = build_random_pipeline(fam.name, device=device, dtype=dtype, seed=seed)
        tag_pipeline(pipe, family=fam.name, model=entry.name, source=RANDOM_INIT)
        return pipe
    if torch.device(device).type == "meta":
        raise ValueError("device='meta' is only supported with source='random-init'")
    location, where, hint = _locate(entry, fam, ref, offline, cache_dir)
    from huggingface_hub.errors import HfHubHTTPError

    try:
        pipe = fam.pipeline_cls().from_pretrained(
            location, **pretrained_kwargs(ref, dtype, offline, cache_dir)
        )
    except (OSError, HfHubHTTPError) as exc:
        # diffusers reports missing files and failed downloads as OSError; keep the reason, drop the traceback
        raise ModelNotFoundError(
            f"Model {entry.name!r} ({entry.family}) could not be loaded from {location}: {_first_line(exc)}",
            looked_for=location,
            where=where,
            hint=hint,
        ) from None
    pipe = pipe.to(device)
    tag_pipeline(pipe, family=fam.name, model=entry.name, source=location)
    return pipe
