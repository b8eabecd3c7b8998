"""Generation with fixed per-image seeds, and small pipeline helpers the runner needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .families import FAMILIES, MODELS, Family, call_settings, get_family

_ORIGIN_ATTR = "_ecodiff_origin"
OUTPUT_TYPES = ("pt", "pil", "np", "latent")


def tag_pipeline(pipe: Any, *, family: str, model: str | None, source: str | None) -> None:
    """Remember where a pipeline came from (family, named model, source); read back by :func:`origin`."""
    setattr(pipe, _ORIGIN_ATTR, {"family": family, "model": model, "source": source})


def origin(pipe: Any) -> dict[str, Any] | None:
    """``{"family", "model", "source"}`` for pipelines made by this module, else None."""
    value = getattr(pipe, _ORIGIN_ATTR, None)
    return dict(value) if value else None


def family_of(pipe: Any) -> str:
    """The family name of a pipeline.

    Pipelines loaded or built here carry their family. Otherwise it is inferred: an SDXL pipeline whose
    scheduler spaces timesteps "trailing" (SDXL-Turbo's EulerAncestral setup) is ``sdxl-turbo``, else
    ``sdxl``; a FLUX pipeline whose transformer embeds guidance is ``flux-dev``, else ``flux-schnell``.
    """
    tagged = origin(pipe)
    if tagged:
        return tagged["family"]
    cls = type(pipe).__name__
    if "StableDiffusionXL" in cls:
        spacing = getattr(pipe.scheduler, "config", {}).get("timestep_spacing")
        return "sdxl-turbo" if spacing == "trailing" else "sdxl"
    if "Flux" in cls:
        return "flux-dev" if pipe.transformer.config.get("guidance_embeds", False) else "flux-schnell"
    raise TypeError(
        f"cannot tell the family of a {cls}; supported pipelines: "
        + ", ".join(sorted({f.pipeline_class for f in (FAMILIES.get(n) for n in FAMILIES.names())}))
    )


def pipe_settings(pipe: Any, family: str | None = None, model: str | None = None) -> dict[str, Any]:
    """Default call settings for a pipeline: its named model's (zoo card included), else its family's."""
    if model is not None:
        return call_settings(model)
    tagged = origin(pipe) or {}
    if family is None and tagged.get("model") and tagged["model"] in MODELS:
        return call_settings(tagged["model"])
    return dict(get_family(family or family_of(pipe)).defaults)


def _pairs(prompts: str | Sequence[str], seeds: int | Sequence[int]) -> tuple[list[str], list[int]]:
    """One prompt per seed: a single prompt is repeated for every seed; otherwise the counts must match."""
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    seed_list = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds is empty")
    if len(prompt_list) == 1 and len(seed_list) > 1:
        prompt_list = prompt_list * len(seed_list)
    if len(prompt_list) != len(seed_list):
        raise ValueError(
            f"got {len(prompt_list)} prompts but {len(seed_list)} seeds; give one seed per prompt"
        )
    return prompt_list, seed_list


def _joined(chunks: list, output_type: str):
    """The pipeline's per-chunk outputs as one batch of ``output_type``."""
    if output_type == "pil":
        return [image for chunk in chunks for image in chunk]
    if output_type == "np":
        import numpy as np

        return np.concatenate(chunks, axis=0)
    images = torch.cat([c.detach() for c in chunks], dim=0).cpu()
    return images.float() if output_type == "pt" else images


def generate(
    pipe: Any,
    prompts: str | Sequence[str],
    seeds: int | Sequence[int],
    *,
    family: str | None = None,
    model: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    height: int | None = None,
    width: int | None = None,
    extra: Mapping[str, Any] | None = None,
    output_type: str = "pt",
    batch_size: int | None = None,
    progress: bool = False,
):
    """Generate one image per (prompt, seed) pair; image i depends only on prompts[i] and seeds[i].

    Each image gets its own CPU ``torch.Generator`` seeded with its seed, so the initial noise (and
    any ancestral-sampler noise) is the same whatever the batch size, device or model: a pruned and an
    unpruned model see identical noise. One prompt with several seeds is repeated for every seed.

    Settings not given fall back to the model's defaults (:func:`pipe_settings`): e.g. FLUX gets its
    ``max_sequence_length`` and guidance (3.5 for dev, 0 for schnell), SDXL-Turbo guidance 0.
    ``extra`` overrides call settings (``steps``, ``guidance``, ...) and adds other pipeline arguments;
    the family turns the settings into its pipeline's argument names.

    Returns for ``output_type="pt"`` a float32 CPU tensor (N, 3, H, W) in [0, 1]; ``"np"`` an array
    (N, H, W, 3); ``"pil"`` a list of PIL images; ``"latent"`` the pipeline's final latents (CPU).
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    prompt_list, seed_list = _pairs(prompts, seeds)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    fam: Family = get_family(family or family_of(pipe))
    settings = pipe_settings(pipe, family, model)
    explicit = {"steps": steps, "guidance": guidance, "height": height, "width": width}
    settings.update({k: v for k, v in explicit.items() if v is not None})
    settings.update(extra or {})
    arguments = fam.pipeline_arguments(settings)

    pipe.set_progress_bar_config(disable=not progress)
    size = batch_size or len(prompt_list)
    chunks = []
    for start in range(0, len(prompt_list), size):
        chunk_prompts = prompt_list[start : start + size]
        generators = [torch.Generator("cpu").manual_seed(s) for s in seed_list[start : start + size]]
        result = pipe(prompt=chunk_prompts, generator=generators, output_type=output_type, **arguments)
        chunks.append(result.images)
    return _joined(chunks, output_type)
