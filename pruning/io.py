"""Saving and loading pruned pipelines: a diffusers directory, the plan, hashes of every weight file, a card.

Layout of a saved pruned model (``copy_components=True``)::

    model_index.json                 as diffusers writes it; the denoiser is ["pruning", "Pruned<Class>"]
    <unet|transformer>/config.json   base architecture + kept units (pruned_units) + weight sha256
    <unet|transformer>/diffusion_pytorch_model.safetensors   the pruned weights
    text_encoder/ vae/ ...           every other component, as diffusers saves them
    plan.json                        the PruningPlan (scores' method, ratio, kept units, accounting)
    pruned.json                      format, pipeline class, base reference, sha256 of plan.json and of
                                     every weight file
    README.md                        the model card

Saved by reference (``base=<hub id>``, no ``copy_components``), only the denoiser folder, ``plan.json``,
``pruned.json`` and the card are written; the other components come from the base at load time.

``DiffusionPipeline.from_pretrained(dir)`` loads a complete directory in any process that imported
``pruning``; :func:`load` does the same after verifying every recorded hash, and also loads a directory
saved by reference. Nothing is pickled; no saved file holds a path of the machine that wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import integrity
from .architectures import denoiser_attr, denoiser_of
from .integrity import IntegrityError, inside, is_hub_id
from .plans import PlanError, PruningPlan, read_json

FORMAT = "ecodiff-bench-pruned/2"
META = "pruned.json"
PLAN = "plan.json"


def _pruned_denoiser(pipe, plan: PruningPlan):
    """The pipeline's denoiser as a pruned class (recording ``plan`` if surgery ran without :func:`pruning.apply`)."""
    from .pretrained import PrunedModelMixin, adopt, check_rebuilds

    denoiser = denoiser_of(pipe)
    if not isinstance(denoiser, PrunedModelMixin):
        denoiser = adopt(pipe, plan)
    check_rebuilds(denoiser)
    return denoiser


def _scrub_machine_paths(root: Path) -> None:
    """diffusers records where each component was loaded from (``_name_or_path``); keep hub ids only."""
    for file in root.rglob("*.json"):
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        name = config.get("_name_or_path") if isinstance(config, dict) else None
        if name is not None and not is_hub_id(str(name)):
            del config["_name_or_path"]
            file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _base_name(pipe, base: str | None) -> str | None:
    """A display name for the unpruned model: the hub id, else the last part of where it was loaded from."""
    if base:
        return base if is_hub_id(base) else Path(base).name
    source = str(pipe.config.get("_name_or_path") or "")
    return (source if is_hub_id(source) else Path(source).name) or None


def save(
    pipe,
    plan: PruningPlan,
    path: str | Path,
    *,
    base: str | None = None,
    copy_components: bool = False,
    card: bool = True,
) -> Path:
    """Write a pruned pipeline: every component (``copy_components=True``) or the denoiser and a ``base`` hub id.

    ``pipe`` is pruned with :func:`pruning.apply` (or by surgery with ``plan``). A local base directory is not
    recorded (that would be a path of this machine): pass it to :func:`load` as ``base=`` instead.
    """
    path = Path(path)
    if not copy_components and not base:
        raise ValueError(
            "save() needs base= (the unpruned model's hub id or directory) or copy_components=True"
        )
    attr = denoiser_attr(pipe)
    denoiser = _pruned_denoiser(pipe, plan)
    path.mkdir(parents=True, exist_ok=True)
    if copy_components:
        pipe.save_pretrained(path, safe_serialization=True)
    else:
        denoiser.save_pretrained(path / attr)
    plan.save(path / PLAN)
    _scrub_machine_paths(path)
    files = integrity.weight_files(path, recursive=True) + [path / PLAN]
    meta = {
        "format": FORMAT,
        "pipeline_class": type(pipe).__name__,
        "denoiser": attr,
        "denoiser_class": type(denoiser).__name__,
        "base": base if base and is_hub_id(base) else None,
        "base_name": _base_name(pipe, base),
        "components_included": copy_components,
        "dtype": str(next(denoiser.parameters()).dtype).removeprefix("torch."),
        "achieved": plan.achieved(),
        "sha256": integrity.record_hashes(path, files),
    }
    (path / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if card:
        from .card import write_card

        write_card(path)
    return path


def read_meta(path: str | Path) -> dict:
    """``pruned.json`` of a saved model, with its paths checked to stay inside the directory."""
    path = Path(path)
    file = path / META
    if not file.is_file():
        raise FileNotFoundError(
            f"{path} is not a saved pruned model: {file} is missing (write one with pruning.save)"
        )
    meta = read_json(file, "pruned-model metadata")
    if meta.get("format") != FORMAT:
        hint = (
            " (saved by an older version: prune and save it again)"
            if str(meta.get("format")).startswith("ecodiff-bench-pruned/")
            else ""
        )
        raise PlanError(f"{file}: unsupported format {meta.get('format')!r}; expected {FORMAT}{hint}")
    missing = [key for key in _META_FIELDS if key not in meta]
    if missing:
        raise PlanError(f"{file}: {missing[0]} is missing (expected {_META_FIELDS[missing[0]][1]})")
    inside(path, meta["denoiser"], field="denoiser", source=file)  # paths first: an escape is named as one
    hashes = meta["sha256"] if isinstance(meta["sha256"], dict) else {}
    for name in hashes:
        inside(path, name, field=f"sha256 entry {name!r}", source=file)
    for key, (check, allowed) in _META_FIELDS.items():
        if not check(meta[key]):
            raise PlanError(f"{file}: {key} = {meta[key]!r} is not allowed (expected {allowed})")
    for name, digest in hashes.items():
        if not (isinstance(digest, str) and len(digest) == 64):
            raise PlanError(f"{file}: sha256[{name!r}] = {digest!r} is not a sha256 (64 hex digits)")
    return meta


def _text_or_none(v) -> bool:
    return v is None or (isinstance(v, str) and v != "")


#: pruned.json's fields besides ``format``: (check, what is allowed); all are written by :func:`save`.
_META_FIELDS = {
    "pipeline_class": (lambda v: isinstance(v, str) and v.isidentifier(), "a diffusers pipeline class name"),
    "denoiser": (lambda v: v in ("unet", "transformer"), "unet or transformer"),
    "denoiser_class": (lambda v: isinstance(v, str) and v.isidentifier(), "a pruned model class name"),
    "base": (_text_or_none, "a hub id or null"),
    "base_name": (_text_or_none, "a name or null"),
    "components_included": (lambda v: isinstance(v, bool), "true or false"),
    "sha256": (lambda v: isinstance(v, dict) and bool(v), "an object of file: sha256"),
}


def verify(path: str | Path) -> dict:
    """Check every file recorded in ``pruned.json`` (and that no weight file was added); returns the metadata."""
    path = Path(path)
    meta = read_meta(path)
    present = integrity.weight_files(path, recursive=True) + [path / PLAN]
    integrity.verify_hashes(path, meta.get("sha256"), present, source=path / META)
    return meta


def load_denoiser(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    verify_files: bool = True,
):
    """The pruned denoiser of a saved model (its weights verified against their recorded sha256)."""
    from . import pretrained

    path = Path(path)
    meta = verify(path) if verify_files else read_meta(path)
    cls = {c.__name__: c for c in pretrained.PRUNED_CLASSES.values()}.get(meta.get("denoiser_class"))
    if cls is None:
        raise PlanError(
            f"{path / META}: denoiser_class {meta.get('denoiser_class')!r} is not one of "
            f"{', '.join(c.__name__ for c in pretrained.PRUNED_CLASSES.values())}"
        )
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    model = cls.from_pretrained(
        inside(path, meta["denoiser"], field="denoiser", source=path / META), verify=verify_files, **kwargs
    )
    return model.to(device).eval()


def load(
    path: str | Path,
    *,
    base: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    local_files_only: bool = True,
    verify_files: bool = True,
):
    """Load a pruned pipeline as its stock diffusers class (e.g. StableDiffusionXLPipeline), hashes verified.

    ``path`` is a directory written by :func:`save` (complete or by reference; ``base=`` overrides the
    recorded base, and is needed when the base was a local directory), or one written by diffusers'
    ``save_pretrained`` from a loaded pruned pipeline (its denoiser checks its own weights).
    """
    import diffusers

    path = Path(path)
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    has_meta = (path / META).is_file()
    meta = (verify(path) if verify_files else read_meta(path)) if has_meta else None
    if meta is None or meta["components_included"]:
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} is not a saved pruned model: no {META} and no model_index.json")
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(path, local_files_only=True, **kwargs)
        except (IntegrityError, PlanError):
            raise
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise PlanError(f"{path}: the saved pipeline does not load ({type(e).__name__}: {e})") from None
    else:
        source = base or meta["base"]
        if not source:
            raise ValueError(
                f"{path} holds only the pruned denoiser and records no hub base "
                f"({meta.get('base_name') or 'unknown'}); pass base= (hub id or directory)"
            )
        pipe_cls = getattr(diffusers, str(meta["pipeline_class"]), None)
        if not (isinstance(pipe_cls, type) and issubclass(pipe_cls, diffusers.DiffusionPipeline)):
            raise PlanError(
                f"{path / META}: pipeline_class {meta['pipeline_class']!r} is not a diffusers pipeline"
            )
        denoiser = load_denoiser(path, dtype=dtype, verify_files=False)  # verified above
        pipe = pipe_cls.from_pretrained(
            source, **{meta["denoiser"]: denoiser}, local_files_only=local_files_only, **kwargs
        )
    return pipe.to(device)


__all__ = ["FORMAT", "IntegrityError", "save", "load", "load_denoiser", "read_meta", "verify"]
