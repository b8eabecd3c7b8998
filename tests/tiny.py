"""Tiny SDXL- and FLUX-architecture pipelines built from constructor arguments (random weights, offline).

Small enough for CPU tests, yet with every structural feature pruning cares about: several heads per
attention, self- and cross-attention, GEGLU feed-forwards at two resolutions (SDXL); double- and
single-stream blocks, joint attention and a guidance embedding (FLUX).
"""

from __future__ import annotations

import torch

WORDS = ["a", "handwritten", "digit", "zero", "one", "two", "three", "seven", "photo", "of", "cat"]


def clip_tokenizer():
    """A CLIP BPE tokenizer over a tiny vocabulary: merges build each word from its characters."""
    from transformers import CLIPTokenizer

    letters = sorted({c for w in WORDS for c in w})
    vocab = {}
    for c in letters:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = []
    for w in WORDS:
        piece = w[0]
        for j, c in enumerate(w[1:], start=1):
            nxt = c + "</w>" if j == len(w) - 1 else c
            merges.append((piece, nxt))
            piece = piece + nxt
            vocab.setdefault(piece, len(vocab))
        if len(w) == 1:
            vocab.setdefault(w + "</w>", len(vocab))
    for tok in ("<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)


def t5_tokenizer():
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [
        ("\u2581" + w, -float(i)) for i, w in enumerate(WORDS)
    ]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def _clip_text(projection: bool, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    vocab_size = len(clip_tokenizer())
    cfg = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
        projection_dim=32,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8,),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        norm_num_groups=4,
        scaling_factor=1.0,
        shift_factor=0.0,
    ).eval()


def sdxl_unet(sample_size: int = 8, block_out_channels: tuple[int, int] = (16, 32), norm_num_groups: int = 4):
    """The SDXL-architecture U-Net of ``sdxl_pipeline`` (seeded by the caller), in eval mode."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=block_out_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=64,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        norm_num_groups=norm_num_groups,
    ).eval()


def sdxl_pipeline(seed: int = 0, scheduler: str = "euler"):
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(seed)
    unet = sdxl_unet()
    sched_cls = EulerAncestralDiscreteScheduler if scheduler == "euler-ancestral" else EulerDiscreteScheduler
    sched = sched_cls(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(seed + 1),
        text_encoder=_clip_text(False, seed + 2),
        text_encoder_2=_clip_text(True, seed + 3),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=sched,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_pipeline(seed: int = 0, guidance_embeds: bool = True):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=3,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(2, 2, 4),
    ).eval()
    torch.manual_seed(seed + 4)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(t5_tokenizer()) + 4, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    ).eval()
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(seed + 1),
        text_encoder=_clip_text(False, seed + 2),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


SDXL_CALL = {"num_inference_steps": 4, "guidance_scale": 5.0, "height": 16, "width": 16}
FLUX_CALL = {
    "num_inference_steps": 4,
    "guidance_scale": 3.5,
    "height": 16,
    "width": 16,
    "max_sequence_length": 8,
}


def fresh_python(script: str, cwd) -> str:
    """Run ``script`` in a new interpreter that sees only this checkout (no harness state, no hub); its
    stdout, after asserting it succeeded."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HF_HUB_OFFLINE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": "2",
    }
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def suite_model(name: str, source, **entry) -> dict:
    """A suite's ``models[]`` entry for a tiny pipeline saved at ``source``: 2 steps at 16x16, CPU, float32."""
    family = {"sdxl": {"guidance": 5.0}, "flux-dev": {"guidance": 3.5, "max_sequence_length": 8}}[name]
    base = {"name": name, "source": str(source), "steps": 2, **family, "height": 16, "width": 16}
    return {**base, "device": "cpu", "dtype": "float32", **entry}
