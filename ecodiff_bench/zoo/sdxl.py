"""digits-sdxl (teacher) and digits-sdxl-turbo (few-step student): genuine StableDiffusionXLPipelines.

Architecture (SDXL's, scaled down): UNet2DConditionModel with cross-attention transformer blocks at
both resolutions of an 8x8x4 latent (transformer_layers_per_block (1, 2), GEGLU feed-forwards, linear
projections, 8 and 16 heads of dim 4), "text_time" added conditioning (pooled text embedding + six size/crop
numbers); two CLIP text encoders (CLIPTextModel, CLIPTextModelWithProjection) whose penultimate hidden
states are concatenated; a small AutoencoderKL (16x16 RGB -> 8x8x4, trained here on the digits);
EulerDiscreteScheduler (deterministic).

Teacher training: epsilon prediction on the SDXL noise schedule (scaled_linear betas), min-SNR-5 loss
weighting, text encoders trained jointly with the UNet, caption variants, 10% caption dropout to ZERO
embeddings (the pipeline's ``force_zeros_for_empty_prompt`` makes zeros the unconditional input for CFG),
EMA weights shipped.

Student (turbo): initialized from the teacher (text encoders and VAE copied and frozen), EulerDiscrete
with "trailing" timesteps, no CFG. Distillation: teacher CFG trajectories (guidance 5, 20 trailing Euler
steps) from fixed noises give target final latents; the student is unrolled on its own 1-, 2- or 4-step
schedule from the same noise (no grad up to a random step) and its denoised estimate at that step is
regressed onto the teacher's final latent.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import torch

from . import data
from .common import (
    EMA,
    StudentRecipe,
    VAEConfig,
    apply_overrides,
    call_settings,
    distill_student,
    heldout_recon_mse,
    load_frozen_teacher,
    lr_at,
    optimizer_step,
    pick_captions,
    pipeline_params,
    progress_iter,
    set_lr,
    setup_torch,
    teacher_pairs,
    train_recipe_vae,
)
from .publish import save_pipeline
from .tokenization import CLIP_MAX_LENGTH, build_clip_tokenizer, clip_special_ids

TIME_IDS = (data.IMAGE_SIZE, data.IMAGE_SIZE, 0, 0, data.IMAGE_SIZE, data.IMAGE_SIZE)


@dataclasses.dataclass
class SDXLRecipe:
    iters: int = 700
    batch: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.995
    cfg_dropout: float = 0.1
    canonical_prob: float = 0.5
    block_out_channels: tuple[int, ...] = (32, 64)
    heads: tuple[int, ...] = (8, 16)  # head COUNT per level: 8 and 16 heads of dim 4 (SDXL: 10/20 of 64)
    transformer_layers: tuple[int, ...] = (1, 2)
    text_hidden: int = 32
    text_layers: int = 3
    vae_iters: int = 400
    vae_channels: tuple[int, ...] = (16, 32)
    guidance_scale: float = 5.0
    num_inference_steps: int = 20
    eval_per_digit: int = 20


@dataclasses.dataclass
class TurboRecipe(StudentRecipe):
    teacher_guidance: float = 5.0


# ----------------------------------------------------------------------------------------------------
# Building


def build_text_encoders(hidden: int, layers: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    ids = clip_special_ids()
    common = dict(
        vocab_size=ids["vocab_size"],
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 8),
        max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=ids["bos_token_id"],
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
        projection_dim=hidden,
    )
    te1 = CLIPTextModel(CLIPTextConfig(hidden_act="quick_gelu", **common))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_act="gelu", **common))
    return te1, te2


def build_unet(r: SDXLRecipe, latent_channels: int = 4):
    from diffusers import UNet2DConditionModel

    n = len(r.block_out_channels)
    return UNet2DConditionModel(
        sample_size=data.IMAGE_SIZE // 2,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(r.block_out_channels),
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        layers_per_block=1,
        attention_head_dim=tuple(r.heads),  # in SDXL configs this field holds the head COUNT
        transformer_layers_per_block=tuple(r.transformer_layers),
        use_linear_projection=True,
        cross_attention_dim=2 * r.text_hidden,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + r.text_hidden,
        norm_num_groups=16,
    )


def build_scheduler(spacing: str = "leading"):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing=spacing,
        steps_offset=1 if spacing == "leading" else 0,
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def make_pipeline(unet, te1, te2, vae, scheduler):
    from diffusers import StableDiffusionXLPipeline

    tok = build_clip_tokenizer()
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=tok,
        tokenizer_2=copy.deepcopy(tok),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def build_random_pipeline(seed: int = 0, **overrides):
    """An untrained digits-sdxl pipeline (same architecture), for tests."""
    r = apply_overrides(SDXLRecipe(), overrides)
    torch.manual_seed(seed)
    from .common import build_vae

    vae = build_vae(VAEConfig(block_out_channels=tuple(r.vae_channels)), data.IMAGE_SIZE)
    te1, te2 = build_text_encoders(r.text_hidden, r.text_layers)
    return make_pipeline(build_unet(r), te1, te2, vae, build_scheduler())


# ----------------------------------------------------------------------------------------------------
# Conditioning and the stateless sampler (mirrors StableDiffusionXLPipeline + EulerDiscreteScheduler)


def encode_text(te1, te2, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds, pooled) exactly as the SDXL pipeline forms them (penultimate hidden states)."""
    h1 = te1(ids, output_hidden_states=True).hidden_states[-2]
    o2 = te2(ids, output_hidden_states=True)
    return torch.cat([h1, o2.hidden_states[-2]], dim=-1), o2.text_embeds


def caption_ids() -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of every caption variant (C, L) and their digits (C,)."""
    caps = data.all_captions()
    tok = build_clip_tokenizer()
    ids = tok(
        [c for c, _ in caps], padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True
    ).input_ids
    return torch.tensor(ids), torch.tensor([d for _, d in caps])


def schedule(scheduler_config: dict, n: int, spacing: str | None = None):
    """(sigmas [n+1], timesteps [n], init_noise_sigma) of the Euler scheduler for n steps."""
    from diffusers import EulerDiscreteScheduler

    kw = {} if spacing is None else {"timestep_spacing": spacing}
    s = EulerDiscreteScheduler.from_config(scheduler_config, **kw)
    s.set_timesteps(n)
    return s.sigmas.float().clone(), s.timesteps.float().clone(), float(s.init_noise_sigma)


def eps_pred(unet, x, sigma, t, emb, pooled, uncond=None, guidance: float = 1.0):
    """Noise prediction at Euler state x (VE scaling), with CFG when uncond=(emb0, pooled0) is given."""
    b = x.shape[0]
    inp = x / math.sqrt(float(sigma) ** 2 + 1.0)
    time_ids = torch.tensor(TIME_IDS, dtype=x.dtype).expand(b, -1)
    tt = torch.full((b,), float(t))
    if uncond is None or guidance == 1.0:
        return unet(
            inp,
            tt,
            encoder_hidden_states=emb,
            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
        ).sample
    e0, p0 = uncond
    out = unet(
        torch.cat([inp, inp]),
        torch.cat([tt, tt]),
        encoder_hidden_states=torch.cat([e0, emb]),
        added_cond_kwargs={
            "text_embeds": torch.cat([p0, pooled]),
            "time_ids": torch.cat([time_ids, time_ids]),
        },
    ).sample
    eu, ec = out.chunk(2)
    return eu + guidance * (ec - eu)


@torch.no_grad()
def euler_sample(unet, z, emb, pooled, sigmas, timesteps, init_sigma, guidance=1.0, uncond=None):
    x = z * init_sigma
    for i in range(len(timesteps)):
        eps = eps_pred(unet, x, sigmas[i], timesteps[i], emb, pooled, uncond, guidance)
        x = x + (sigmas[i + 1] - sigmas[i]) * eps
    return x


# ----------------------------------------------------------------------------------------------------
# Teacher


def train_sdxl(
    out_dir: Path, *, seed: int = 0, progress: bool = True, evaluate: bool = True, **overrides
) -> Path:
    r = apply_overrides(SDXLRecipe(), overrides)
    gen = setup_torch(seed)
    times: dict[str, float] = {}
    t_all, c_all = time.perf_counter(), time.process_time()

    x_train, y_train = data.digits_tensors("train")
    t0 = time.perf_counter()
    vae, lat_mean, lat_std = train_recipe_vae(x_train, r, gen, progress)
    scaling = float(1.0 / lat_mean.std())
    vae.register_to_config(scaling_factor=scaling)
    times["vae_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    te1, te2 = build_text_encoders(r.text_hidden, r.text_layers)
    unet = build_unet(r)
    model = torch.nn.ModuleDict({"unet": unet, "te1": te1, "te2": te2})
    ema = EMA(model, r.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01)
    cap_ids, _ = caption_ids()
    sched = build_scheduler()
    alphas_cumprod = sched.alphas_cumprod.float()
    time_ids = torch.tensor(TIME_IDS, dtype=torch.float32).expand(r.batch, -1)
    model.train()
    for step in progress_iter(r.iters, "digits-sdxl", progress):
        set_lr(opt, lr_at(step, r.iters, r.lr, warmup=min(40, r.iters)))
        idx = torch.randint(0, len(x_train), (r.batch,), generator=gen)
        x0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        ids = cap_ids[pick_captions(y_train[idx], r.canonical_prob, gen)]
        emb, pooled = encode_text(te1, te2, ids)
        keep = (torch.rand(r.batch, generator=gen) >= r.cfg_dropout).float()
        emb, pooled = emb * keep[:, None, None], pooled * keep[:, None]
        t = torch.randint(0, 1000, (r.batch,), generator=gen)
        ab = alphas_cumprod[t][:, None, None, None]
        noise = torch.randn(x0.shape, generator=gen)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        pred = unet(
            xt, t, encoder_hidden_states=emb, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        ).sample
        snr = (ab / (1 - ab)).flatten()
        w = torch.clamp(snr, max=5.0) / snr
        loss = (w * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer_step(opt, loss, model, ema)
    times["unet_s"] = time.perf_counter() - t0
    train_s, train_cpu_s = time.perf_counter() - t_all, time.process_time() - c_all

    final = ema.shadow
    pipe = make_pipeline(final["unet"], final["te1"], final["te2"], vae, build_scheduler())
    call_kwargs = call_settings(r.num_inference_steps, r.guidance_scale)
    return _save(
        pipe,
        out_dir,
        name="digits-sdxl",
        family="sdxl",
        seed=seed,
        recipe=r,
        call_kwargs=call_kwargs,
        train_s=train_s,
        train_cpu_s=train_cpu_s,
        times=times,
        teacher=None,
        evaluate=evaluate,
        per_digit=r.eval_per_digit,
        extra=heldout_recon_mse(vae),
    )


# ----------------------------------------------------------------------------------------------------
# Student (turbo)


def train_sdxl_turbo(
    out_dir: Path,
    teacher_dir: Path,
    *,
    seed: int = 0,
    progress: bool = True,
    evaluate: bool = True,
    **overrides,
) -> Path:
    r = apply_overrides(TurboRecipe(), overrides)
    gen = setup_torch(seed)
    times: dict[str, float] = {}
    t_all, c_all = time.perf_counter(), time.process_time()
    teacher = load_frozen_teacher("StableDiffusionXLPipeline", teacher_dir, "unet")
    trailing = dict(teacher.scheduler.config)
    trailing.update(timestep_spacing="trailing", steps_offset=0)

    # 1) teacher targets: CFG trajectories from fixed noises, balanced over digits and caption variants
    t0 = time.perf_counter()
    cap_ids, _ = caption_ids()
    with torch.no_grad():
        cap_emb, cap_pooled = encode_text(teacher.text_encoder, teacher.text_encoder_2, cap_ids)
    c = teacher.unet.config.in_channels
    s = teacher.unet.config.sample_size
    sig_t, ts_t, init_t = schedule(trailing, r.teacher_steps)

    def teacher_sample(z, e, p):
        return euler_sample(
            teacher.unet,
            z,
            e,
            p,
            sig_t,
            ts_t,
            init_t,
            r.teacher_guidance,
            (torch.zeros_like(e), torch.zeros_like(p)),
        )

    pairs = teacher_pairs(
        r,
        cap_emb,
        cap_pooled,
        lambda n: torch.randn((n, c, s, s), generator=gen),
        teacher_sample,
        gen,
        "turbo: teacher targets",
        progress,
    )
    times["teacher_targets_s"] = time.perf_counter() - t0

    # 2) student: unroll own few-step schedule, regress denoised estimate onto the teacher's result
    t0 = time.perf_counter()
    student = copy.deepcopy(teacher.unet).train().requires_grad_(True)
    scheds = {n: schedule(trailing, n) for n in r.step_choices}
    ema = distill_student(
        student,
        r,
        pairs,
        gen,
        desc="digits-sdxl-turbo",
        progress=progress,
        sigmas={n: sig for n, (sig, _, _) in scheds.items()},
        init_sigma={n: init for n, (_, _, init) in scheds.items()},
        predict=lambda x, n, j, e, p: eps_pred(student, x, scheds[n][0][j], scheds[n][1][j], e, p),
    )
    times["student_s"] = time.perf_counter() - t0
    train_s, train_cpu_s = time.perf_counter() - t_all, time.process_time() - c_all

    from diffusers import EulerDiscreteScheduler

    pipe = make_pipeline(
        ema.shadow,
        teacher.text_encoder,
        teacher.text_encoder_2,
        teacher.vae,
        EulerDiscreteScheduler.from_config(trailing),
    )
    call_kwargs = call_settings(r.num_inference_steps, 0.0)
    return _save(
        pipe,
        out_dir,
        name="digits-sdxl-turbo",
        family="sdxl-turbo",
        seed=seed,
        recipe=r,
        call_kwargs=call_kwargs,
        train_s=train_s,
        train_cpu_s=train_cpu_s,
        times=times,
        teacher="digits-sdxl",
        evaluate=evaluate,
        per_digit=r.eval_per_digit,
        steps_sweep=[n for n in (1, 2, 4) if n != r.num_inference_steps],
    )


# ----------------------------------------------------------------------------------------------------
# Card


def _params(pipe) -> dict[str, int]:
    return pipeline_params(pipe, "unet", "unet_transformer_blocks", lambda n: ".transformer_blocks." in n)


def _save(pipe, out_dir: Path, **kw) -> Path:
    return save_pipeline(
        pipe, out_dir, params=_params(pipe), clip_tokenizers=("tokenizer", "tokenizer_2"), **kw
    )
