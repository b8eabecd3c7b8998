"""The digits model zoo: small text-to-image models trained on scikit-learn's digits.

Each model is a genuine diffusers pipeline folder (or, for digits-clip, an open_clip local-dir folder)
under ``ecodiff_bench/zoo/models/<name>/`` with a ``zoo_card.json``:

- digits-sdxl          StableDiffusionXLPipeline (two CLIP text encoders, text_time conditioning, Euler)
- digits-sdxl-turbo    few-step student of digits-sdxl (trailing Euler, no CFG)
- digits-flux          FluxPipeline (CLIP + T5, double/single-stream transformer, guidance embedding)
- digits-flux-schnell  few-step student of digits-flux (no guidance embedding)
- digits-clip          open_clip model used for zero-shot recognisability, CLIP score and features

Importing this package does not import torch; ``train`` and ``load_digits_clip`` do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ecodiff_bench.core.registry import UnknownNameError

MODELS_DIR = Path(__file__).resolve().parent / "models"
CARD_FILE = "zoo_card.json"

ZOO_NAMES: tuple[str, ...] = (
    "digits-sdxl",
    "digits-sdxl-turbo",
    "digits-flux",
    "digits-flux-schnell",
    "digits-clip",
)
FAMILIES: dict[str, str] = {
    "digits-sdxl": "sdxl",
    "digits-sdxl-turbo": "sdxl-turbo",
    "digits-flux": "flux-dev",
    "digits-flux-schnell": "flux-schnell",
    "digits-clip": "clip",
}
TEACHERS: dict[str, str] = {"digits-sdxl-turbo": "digits-sdxl", "digits-flux-schnell": "digits-flux"}
# Order in which `train_all` builds the zoo: the classifier first (it scores the generators),
# teachers before their students.
TRAIN_ORDER: tuple[str, ...] = (
    "digits-clip",
    "digits-sdxl",
    "digits-flux",
    "digits-sdxl-turbo",
    "digits-flux-schnell",
)
GENERATORS: tuple[str, ...] = tuple(n for n in ZOO_NAMES if n != "digits-clip")


class ZooModelMissing(FileNotFoundError):
    """A zoo model (or one of its files) is not where it should be."""


def _check_name(name: str) -> str:
    if name not in ZOO_NAMES:
        raise UnknownNameError("zoo model", name, list(ZOO_NAMES))
    return name


def _required_file(name: str) -> str:
    return "open_clip_config.json" if FAMILIES[name] == "clip" else "model_index.json"


def zoo_path(name: str, root: str | Path | None = None) -> Path:
    """Folder of a shipped zoo model; raises ZooModelMissing naming the missing file and the fix."""
    _check_name(name)
    path = (Path(root) if root is not None else MODELS_DIR) / name
    for fname in (_required_file(name), CARD_FILE):
        if not (path / fname).is_file():
            raise ZooModelMissing(
                f"Zoo model {name!r}: {fname} not found in {path}. "
                f"Run `ecodiff-bench zoo train {name}` to (re)build it."
            )
    return path


def card(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The model's zoo_card.json as a dict (with "path" added)."""
    path = zoo_path(name, root)
    c = json.loads((path / CARD_FILE).read_text())
    c["path"] = str(path)
    return c


def list_models(root: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per zoo model: name, family, teacher, available, and the card's fields when present."""
    out = []
    for name in ZOO_NAMES:
        entry: dict[str, Any] = {"name": name, "family": FAMILIES[name], "teacher": TEACHERS.get(name)}
        try:
            entry.update(card(name, root))
            entry["available"] = True
        except ZooModelMissing as e:
            entry["available"] = False
            entry["error"] = str(e)
        out.append(entry)
    return out


def train(
    name: str,
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    teacher_dir: str | Path | None = None,
    evaluate: bool = True,
    **overrides: Any,
) -> Path:
    """Train a zoo model from scratch with fixed seeds and write it to ``out_dir``.

    out_dir defaults to the shipped location (``ecodiff_bench/zoo/models/<name>``). Students
    (digits-sdxl-turbo, digits-flux-schnell) distil from ``teacher_dir`` (default: the shipped teacher).
    ``evaluate`` scores the generators' recognisability with the shipped digits-clip (skipped with a
    note in the card when digits-clip is missing). ``overrides`` replace fields of the model's recipe
    (e.g. ``iters=2`` for a smoke run); unknown names raise TypeError listing the known ones.
    Returns the written folder.
    """
    _check_name(name)
    out = Path(out_dir) if out_dir is not None else MODELS_DIR / name
    if name == "digits-clip":
        from .clip import train_clip

        return train_clip(out, seed=seed, progress=progress, **overrides)
    if name in TEACHERS:
        teacher = Path(teacher_dir) if teacher_dir is not None else zoo_path(TEACHERS[name])
    elif teacher_dir is not None:
        raise ValueError(f"{name} is not a student model; teacher_dir applies only to {sorted(TEACHERS)}")
    if name == "digits-sdxl":
        from .sdxl import train_sdxl

        return train_sdxl(out, seed=seed, progress=progress, evaluate=evaluate, **overrides)
    if name == "digits-sdxl-turbo":
        from .sdxl import train_sdxl_turbo

        return train_sdxl_turbo(out, teacher, seed=seed, progress=progress, evaluate=evaluate, **overrides)
    if name == "digits-flux":
        from .flux import train_flux

        return train_flux(out, seed=seed, progress=progress, evaluate=evaluate, **overrides)
    from .flux import train_flux_schnell

    return train_flux_schnell(out, teacher, seed=seed, progress=progress, evaluate=evaluate, **overrides)


def evaluate(name: str, root: str | Path | None = None, per_digit: int = 20, seed: int = 0) -> dict[str, Any]:
    """Re-score a generator's recognisability with digits-clip at its recorded call settings and write it
    into its card (e.g. after retraining digits-clip). Returns the recognisability dict."""
    if name not in GENERATORS:
        raise ValueError(f"evaluate applies to the generators {list(GENERATORS)}, not {name!r}")
    from .publish import evaluate_and_record

    steps = card(name, root)["call_kwargs"]["num_inference_steps"]
    sweep = [n for n in (1, 2, 4) if n != steps] if name in TEACHERS else None
    return evaluate_and_record(zoo_path(name, root), per_digit=per_digit, steps_sweep=sweep, seed=seed)


def train_all(*, seed: int = 0, progress: bool = True) -> list[Path]:
    """Rebuild the whole zoo in dependency order (about 15 minutes on 2 CPU cores)."""
    return [train(n, seed=seed, progress=progress) for n in TRAIN_ORDER]


def load_digits_clip(device: str = "cpu", model_dir: str | Path | None = None):
    """(model, preprocess, tokenizer) of digits-clip; see :mod:`ecodiff_bench.zoo.clip`."""
    from .clip import load_digits_clip as _load

    return _load(device, model_dir)


def encode_images(model, images, **kwargs):
    """digits-clip image features; see :func:`ecodiff_bench.zoo.clip.encode_images`."""
    from .clip import encode_images as _enc

    return _enc(model, images, **kwargs)


__all__ = [
    "CARD_FILE",
    "FAMILIES",
    "GENERATORS",
    "MODELS_DIR",
    "TEACHERS",
    "TRAIN_ORDER",
    "ZOO_NAMES",
    "ZooModelMissing",
    "card",
    "encode_images",
    "evaluate",
    "list_models",
    "load_digits_clip",
    "train",
    "train_all",
    "zoo_path",
]
