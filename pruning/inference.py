"""Inference options for a (pruned) denoiser: attention kernel, memory format and ``torch.compile``.

These are what a GPU user sets before timing or serving a model, so the harness applies them the same
way to the base and the pruned model. Options change speed, never results beyond float rounding:

- ``attention``: ``sdpa`` runs attention through ``torch.nn.functional.scaled_dot_product_attention``
  (fused flash / memory-efficient / cuDNN kernels where the device has them); ``math`` is the unfused
  reference (U-Nets: diffusers' ``AttnProcessor``; FLUX: the ``_native_math`` dispatcher backend).
- ``channels_last``: stores convolution weights NHWC, which cuDNN's half-precision convolutions prefer.
  ``auto`` applies it to U-Nets on CUDA (transformers have no convolutions); ``on`` / ``off`` force it.
- ``compile``: a ``torch.compile`` mode (``default``, ``reduce-overhead``, ``max-autotune``,
  ``max-autotune-no-cudagraphs``) applied in place with ``nn.Module.compile``, so the pipeline and
  :func:`pruning.find_groups` still see the same module; ``fullgraph=True`` makes any graph break an error.
  Compilation happens on the first call: time that call apart from the steady-state ones.

Surgery introduces no graph break: pruned linears are plain ``nn.Linear`` and an emptied module is a
:class:`~pruning.targets.ConstantModule` (see :func:`graph_breaks`, used by the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .architectures import architecture
from .config import ATTENTION, CHANNELS_LAST, COMPILE_MODES

# diffusers' attention-dispatcher backends (FLUX processors) for each option
_FLUX_BACKENDS = {"sdpa": "native", "math": "_native_math"}


@dataclass(frozen=True)
class InferenceOptions:
    attention: str = "sdpa"
    channels_last: str = "auto"
    compile: str | None = None  # a torch.compile mode, or None for eager execution
    fullgraph: bool = False

    def __post_init__(self):
        for name, allowed in (("attention", ATTENTION), ("channels_last", CHANNELS_LAST)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}: got {value!r}; allowed: {', '.join(allowed)}")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile: got {self.compile!r}; allowed: {', '.join(COMPILE_MODES)} or None")
        if not isinstance(self.fullgraph, bool):
            raise ValueError(f"fullgraph: got {self.fullgraph!r}; allowed: true or false")
        if self.fullgraph and self.compile is None:
            raise ValueError("fullgraph: needs compile set to a mode (it applies to torch.compile)")

    def to_dict(self) -> dict:
        return asdict(self)


def _device_type(module: nn.Module) -> str:
    param = next(module.parameters(), None)
    return param.device.type if param is not None else "cpu"


def _set_attention(denoiser: nn.Module, attention: str) -> str:
    """Install the attention implementation; returns what is now in use, for the record."""
    if architecture(denoiser) == "unet":
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        processor = AttnProcessor2_0 if attention == "sdpa" else AttnProcessor
        denoiser.set_attn_processor(processor())
        return processor.__name__
    # FLUX processors route through diffusers' attention dispatcher; setting a backend also makes it the
    # process-wide default for processors that name none.
    backend = _FLUX_BACKENDS[attention]
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # set_attention_backend warns that the API is experimental
    try:
        denoiser.set_attention_backend(backend)
    finally:
        diffusers_logging.set_verbosity(level)
    return f"attention dispatcher backend {backend!r}"


def apply_inference_options(denoiser: nn.Module, options: InferenceOptions | None = None) -> dict:
    """Apply ``options`` to ``denoiser`` in place (after moving it to its device and dtype).

    Returns the record of what was applied: the options, the attention implementation, whether
    channels-last was used, and the torch version (compiled code depends on it).
    """
    options = options or InferenceOptions()
    record = {**options.to_dict(), "torch": torch.__version__}
    record["attention_impl"] = _set_attention(denoiser, options.attention)
    if architecture(denoiser) == "unet":  # only convolution weights have a memory format to choose
        wanted = options.channels_last == "on" or (
            options.channels_last == "auto" and _device_type(denoiser) == "cuda"
        )
        denoiser.to(memory_format=torch.channels_last if wanted else torch.contiguous_format)
        record["channels_last_applied"] = wanted
    else:
        record["channels_last_applied"] = False
    if options.compile is not None:
        denoiser.compile(mode=options.compile, fullgraph=options.fullgraph)
    return record


def graph_breaks(fn: Callable[..., Any], *args, **kwargs) -> dict:
    """Trace ``fn(*args, **kwargs)`` with TorchDynamo (no compilation) and count its graphs and breaks."""
    import torch._dynamo

    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(fn)(*args, **kwargs)
    torch._dynamo.reset()
    return {
        "graphs": explained.graph_count,
        "graph_breaks": explained.graph_break_count,
        "reasons": [str(r.reason) for r in explained.break_reasons],
    }


__all__ = [
    "ATTENTION",
    "CHANNELS_LAST",
    "COMPILE_MODES",
    "InferenceOptions",
    "apply_inference_options",
    "graph_breaks",
]
