"""Full-size pipelines with random weights, from the published configs embedded in ecodiff_bench/configs.

Two modes, chosen by ``device``:

* ``"meta"``: parameters without storage; building the 12B-parameter FLUX.1-dev takes well under a
  second. For parameter, size and FLOP accounting; such a pipeline cannot run.
* any real device (``"cpu"``, ``"cuda"``, ``"cuda:1"``): tensors allocated directly on that device in
  the requested dtype and initialised by each library's own initialiser under a fixed seed. Speed,
  memory and energy do not depend on weight values, so these pipelines stand in for the real ones on
  machines without the weights. Their images are noise.

Every component's published config can be overridden key by key (``overrides={"unet": {...}}``); the
tests build tiny pipelines through the same path (:func:`tiny_overrides`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from .families import Family, get_family
from .tokenizers import clip_tokenizer, t5_tokenizer

# Keys of a published transformers config.json that describe the file rather than the architecture.
_TRANSFORMERS_FILE_KEYS = {
    "architectures",
    "model_type",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "_name_or_path",
}


def published_config(family: str) -> dict[str, Any]:
    """The embedded configs of a family (``{"pipeline", "components": {name: {"class", "config"}}, ...}``)."""
    return get_family(family).published_config()


def expected_params(family: str) -> dict[str, int]:
    """Published parameter counts per component (what the embedded configs must reproduce)."""
    return dict(published_config(family)["expected_params"])


def component_names(family: str) -> list[str]:
    return list(published_config(family)["components"])


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def _construction(device: torch.device, dtype: torch.dtype, seed: int) -> Iterator[None]:
    """Allocate new parameters on ``device`` in ``dtype``; seed the initialisers without leaking RNG state."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    if device.type == "meta":
        with torch.device(device), _default_dtype(dtype):
            yield
        return
    fork_devices: list[int] = []
    if device.type == "cuda":
        fork_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=fork_devices), torch.device(device), _default_dtype(dtype):
        torch.manual_seed(seed)
        yield


def _import(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_component(
    family: str,
    component: str,
    *,
    device: str | torch.device = "meta",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """One pipeline component (model, tokenizer or scheduler) from the family's published config.

    ``overrides`` replaces config keys of this component. Models are returned in eval mode.
    The component's seed is derived from ``seed`` and the component's position in the config file, so
    a component's weights do not depend on which other components are built.
    """
    fam: Family = get_family(family)
    components = fam.published_config()["components"]
    if component not in components:
        raise KeyError(f"{fam.name} has no component {component!r}; components: {', '.join(components)}")
    spec = components[component]
    config = {**copy.deepcopy(spec["config"]), **dict(overrides or {})}
    kind = spec["class"]

    if kind == "clip-bpe":
        return clip_tokenizer(pad_token=config["pad_token"], model_max_length=config["model_max_length"])
    if kind == "t5-unigram":
        return t5_tokenizer(
            num_pieces=config["num_pieces"],
            extra_ids=config["extra_ids"],
            model_max_length=config["model_max_length"],
        )

    cls = _import(kind)
    if kind.startswith("diffusers:") and kind.endswith("Scheduler"):
        return cls.from_config(config)

    device = torch.device(device)
    component_seed = seed * 100 + list(components).index(component)
    with _construction(device, dtype, component_seed):
        if kind.startswith("diffusers:"):
            model = cls.from_config(config)
        elif kind.startswith("transformers:"):
            arch = {k: v for k, v in config.items() if k not in _TRANSFORMERS_FILE_KEYS}
            model = cls(cls.config_class(**arch))
        else:
            raise ValueError(f"unsupported component class {kind!r} in {fam.config_file}")
    return model.eval()


def build_random_pipeline(
    family: str,
    *,
    device: str | torch.device = "meta",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
):
    """A whole pipeline of ``family`` with random weights (see the module docstring for the modes)."""
    fam = get_family(family)
    names = list(fam.published_config()["components"])
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise KeyError(
            f"overrides for unknown components {unknown} of {fam.name}; components: {', '.join(names)}"
        )
    parts = {
        name: build_component(
            fam.name, name, device=device, dtype=dtype, seed=seed, overrides=overrides.get(name)
        )
        for name in names
    }
    extra = {"add_watermarker": False} if fam.pipeline_class == "StableDiffusionXLPipeline" else {}
    pipe = fam.pipeline_cls()(**parts, **extra)
    from .generation import tag_pipeline

    tag_pipeline(pipe, family=fam.name, model=None, source="random-init")
    return pipe


def tiny_overrides(family: str) -> dict[str, dict[str, Any]]:
    """Overrides that shrink every component of ``family`` to a CPU-test size (same classes, same code path).

    Tokenizers keep their full vocabularies (CLIP 49,408, T5 32,100), so the text encoders keep those
    vocabulary sizes. Tiny pipelines run at small sizes such as 32x32 or 64x64 (the VAE downsamples by 2).
    """
    fam = get_family(family)
    clip = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": 32,
    }
    vae = {
        "block_out_channels": [32, 64],
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "latent_channels": 4,
        "layers_per_block": 1,
        "sample_size": 64,
    }
    if fam.arch == "sdxl":
        unet = {
            "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "attention_head_dim": [2, 4],  # head counts in SDXL configs
            "transformer_layers_per_block": [1, 2],
            "cross_attention_dim": 64,  # two text encoders of hidden size 32
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "sample_size": 32,
        }
        return {"unet": unet, "vae": vae, "text_encoder": dict(clip), "text_encoder_2": dict(clip)}
    transformer = {
        "in_channels": 16,
        "num_layers": 2,
        "num_single_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 32,
        "axes_dims_rope": [4, 6, 6],
    }
    t5 = {
        "d_model": 32,
        "d_ff": 37,
        "d_kv": 8,
        "num_heads": 4,
        "num_layers": 2,
        "relative_attention_num_buckets": 8,
    }
    return {"transformer": transformer, "vae": vae, "text_encoder": dict(clip), "text_encoder_2": t5}


def tiny_pipeline(
    family: str, *, seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
):
    """A tiny random pipeline of ``family`` for tests (a few MB; 4 steps at 64x64 take well under a second)."""
    return build_random_pipeline(
        family, device=device, dtype=dtype, seed=seed, overrides=tiny_overrides(family)
    )
