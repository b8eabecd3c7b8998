"""Writing a trained zoo pipeline to disk with its card, and scoring it with digits-clip."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from . import data
from .common import (
    CARD_FILE,
    TIME_NOTE,
    replace_dir,
    versions,
    weight_bytes,
    write_clip_tokenizer_files,
    write_json,
)


def save_pipeline(
    pipe,
    out_dir: Path,
    *,
    name: str,
    family: str,
    seed: int,
    recipe,
    call_kwargs: dict[str, Any],
    train_s: float,
    train_cpu_s: float,
    times: dict[str, float],
    teacher: str | None,
    evaluate: bool,
    per_digit: int,
    params: dict[str, int],
    clip_tokenizers: tuple[str, ...] = (),
    steps_sweep: list[int] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """save_pretrained (safetensors) into a temporary sibling folder, write the card, move into place,
    then (optionally) score recognisability by loading the written folder with diffusers."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir.parent))
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    for sub in clip_tokenizers:
        write_clip_tokenizer_files(tmp / sub)
    card = {
        "name": name,
        "family": family,
        "pipeline_class": type(pipe).__name__,
        "params": params,
        "training_time_s": round(train_s, 2),
        "training_cpu_time_s": round(train_cpu_s, 2),
        "training_time_breakdown_s": {k: round(v, 2) for k, v in times.items()},
        "training_threads": torch.get_num_threads(),
        "training_time_note": TIME_NOTE,
        "recognisability": None,
        "call_kwargs": call_kwargs,
        "teacher": teacher,
        "seed": seed,
        "image_size": data.IMAGE_SIZE,
        "data": {
            "source": "sklearn.datasets.load_digits",
            "split": "train",
            "n_train": int(len(data.split_indices()[0])),
        },
        "recipe": dataclasses.asdict(recipe),
        "versions": versions(),
        "weights_bytes": weight_bytes(tmp),
    }
    card.update(extra or {})
    write_json(tmp / CARD_FILE, card)
    final = replace_dir(tmp, out_dir)
    if evaluate:
        evaluate_and_record(final, per_digit=per_digit, steps_sweep=steps_sweep)
    return final


def evaluate_and_record(
    model_dir: Path, per_digit: int = 20, steps_sweep: list[int] | None = None, seed: int = 0
) -> dict[str, Any] | None:
    """Score a saved generator with digits-clip (loaded with its stock diffusers class) and write the
    result into its card. Returns the recognisability dict (None when digits-clip is missing)."""
    from diffusers import DiffusionPipeline

    from . import ZooModelMissing, zoo_path
    from .classify import DigitsClassifier, recognisability

    model_dir = Path(model_dir)
    card_path = model_dir / CARD_FILE
    card = json.loads(card_path.read_text())
    try:
        clip_dir = zoo_path("digits-clip")
    except ZooModelMissing as e:
        card["recognisability"] = None
        card["recognisability_note"] = f"not evaluated: {e}"
        write_json(card_path, card)
        return None
    clf = DigitsClassifier(model_dir=clip_dir)
    pipe = DiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    t0 = time.perf_counter()
    rec = recognisability(pipe, card["call_kwargs"], per_digit=per_digit, seed=seed, classifier=clf)
    rec["eval_time_s"] = round(time.perf_counter() - t0, 2)
    card["recognisability"] = rec
    card.pop("recognisability_note", None)
    if steps_sweep:
        sweep = {str(card["call_kwargs"]["num_inference_steps"]): rec["value"]}
        for n in steps_sweep:
            kw = dict(card["call_kwargs"], num_inference_steps=n)
            sweep[str(n)] = recognisability(pipe, kw, per_digit=per_digit, seed=seed, classifier=clf)["value"]
        card["recognisability_by_steps"] = dict(sorted(sweep.items(), key=lambda kv: int(kv[0])))
    write_json(card_path, card)
    return rec
