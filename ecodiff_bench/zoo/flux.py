"""digits-flux (FLUX-dev-like teacher) and digits-flux-schnell (few-step student): genuine FluxPipelines.

Architecture (FLUX's, scaled down): FluxTransformer2DModel with 2 double-stream (joint image/text
attention) and 4 single-stream blocks, 8 heads of dim 8, RoPE over (time, row, col) axes (0, 4, 4);
the 8x8x4 latent of a small AutoencoderKL is packed 2x2 into 16 image tokens of 16 channels. Text: a
CLIPTextModel (pooled output -> pooled_projections) and a T5EncoderModel (last hidden states ->
encoder_hidden_states, max_sequence_length 16). FlowMatchEulerDiscreteScheduler with FLUX-dev's dynamic
shift (base_image_seq_len 16 -> mu = 0.5 at 16x16).

Teacher training (rectified flow): x_t = (1 - s) x0 + s noise, the transformer predicts noise - x0;
s drawn uniformly and then shifted like the sampler's schedule; text encoders trained jointly; 10% of
captions replaced by the empty prompt. Phase 1 trains a plain conditional model (guidance input fixed
at 1). Phase 2 is a guidance distillation, as FLUX-dev's guidance embedding stands for: a frozen copy
of the phase-1 model gives CFG velocities v_u + g (v_c - v_u) (v_u: empty prompt) and the model, told
g through its guidance embedding, learns to produce them in one pass (g ~ U[1, 6]). FluxPipeline's
``guidance_scale`` is therefore a real (distilled) CFG scale; true CFG (``true_cfg_scale``) stays off.

Student (schnell): guidance_embeds=False, initialized from the teacher (all weights but the guidance
embedder), text encoders and VAE copied and frozen, FLUX-schnell's unshifted schedule, 1/2/4 steps.
Distilled onto the teacher's 20-step samples at guidance 3.5 from the same noise, unrolling the
student's own schedule (no grad up to a random step) and regressing its denoised estimate.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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
from .tokenization import (
    CLIP_MAX_LENGTH,
    T5_MAX_LENGTH,
    build_clip_tokenizer,
    build_t5_tokenizer,
    clip_special_ids,
    t5_vocab_size,
)

LATENT = data.IMAGE_SIZE // 2  # 8x8 latent (VAE factor 2)


@dataclasses.dataclass
class FluxRecipe:
    iters: int = 800
    batch: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.995
    cfg_dropout: float = 0.1
    canonical_prob: float = 0.5
    num_layers: int = 2
    num_single_layers: int = 4
    heads: int = 8  # at least 8 per attention module, so one head is a small share of a layer (FLUX: 24)
    head_dim: int = 8
    rope_axes: tuple[int, ...] = (0, 4, 4)  # (time, row, col): must sum to head_dim; time is always 0 here
    clip_hidden: int = 32
    t5_dim: int = 64
    text_layers: int = 2
    vae_iters: int = 400
    vae_channels: tuple[int, ...] = (16, 32)
    distill_iters: int = 250
    distill_lr: float = 3e-4
    guidance_range: tuple[float, float] = (1.0, 6.0)
    guidance_scale: float = 3.5
    num_inference_steps: int = 20
    eval_per_digit: int = 20


@dataclasses.dataclass
class SchnellRecipe(StudentRecipe):
    teacher_guidance: float = 3.5


# ----------------------------------------------------------------------------------------------------
# Building


def build_text_encoders(clip_hidden: int, t5_dim: int, layers: int):
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    ids = clip_special_ids()
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=ids["vocab_size"],
            hidden_size=clip_hidden,
            intermediate_size=2 * clip_hidden,
            num_hidden_layers=layers,
            num_attention_heads=max(1, clip_hidden // 8),
            max_position_embeddings=CLIP_MAX_LENGTH,
            bos_token_id=ids["bos_token_id"],
            eos_token_id=ids["eos_token_id"],
            pad_token_id=ids["pad_token_id"],
            projection_dim=clip_hidden,
            hidden_act="quick_gelu",
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=t5_vocab_size(),
            d_model=t5_dim,
            d_kv=16,
            d_ff=2 * t5_dim,
            num_layers=layers,
            num_heads=t5_dim // 16,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            use_cache=False,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            tie_word_embeddings=False,
        )
    )
    return clip, t5


def build_transformer(r: FluxRecipe, guidance_embeds: bool = True, latent_channels: int = 4):
    from diffusers import FluxTransformer2DModel

    axes = tuple(r.rope_axes)
    if sum(axes) != r.head_dim or any(a % 2 for a in axes):
        raise ValueError(f"rope_axes {axes} must be even and sum to head_dim {r.head_dim}")
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,
        num_layers=r.num_layers,
        num_single_layers=r.num_single_layers,
        attention_head_dim=r.head_dim,
        num_attention_heads=r.heads,
        joint_attention_dim=r.t5_dim,
        pooled_projection_dim=r.clip_hidden,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=axes,
    )


def build_scheduler(dev: bool = True):
    from diffusers import FlowMatchEulerDiscreteScheduler

    if dev:  # FLUX-dev: resolution-dependent shift
        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=(LATENT // 2) ** 2,
            max_image_seq_len=256,
        )
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


def make_pipeline(transformer, clip, t5, vae, scheduler):
    from diffusers import FluxPipeline

    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=build_t5_tokenizer(),
        transformer=transformer,
    )


def build_random_pipeline(seed: int = 0, guidance_embeds: bool = True, **overrides):
    """An untrained digits-flux pipeline (same architecture), for tests."""
    r = apply_overrides(FluxRecipe(), overrides)
    torch.manual_seed(seed)
    from .common import build_vae

    vae = build_vae(VAEConfig(block_out_channels=tuple(r.vae_channels)), data.IMAGE_SIZE)
    clip, t5 = build_text_encoders(r.clip_hidden, r.t5_dim, r.text_layers)
    return make_pipeline(
        build_transformer(r, guidance_embeds), clip, t5, vae, build_scheduler(guidance_embeds)
    )


# ----------------------------------------------------------------------------------------------------
# Conditioning, packing and the stateless sampler (mirror FluxPipeline + FlowMatchEulerDiscreteScheduler)


def caption_token_ids() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clip ids, t5 ids, digits) for every caption variant, plus a final row for the empty prompt."""
    caps = [c for c, _ in data.all_captions()] + [""]
    clip_tok, t5_tok = build_clip_tokenizer(), build_t5_tokenizer()
    c_ids = clip_tok(caps, padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True).input_ids
    t_ids = t5_tok(caps, padding="max_length", max_length=T5_MAX_LENGTH, truncation=True).input_ids
    digits = [d for _, d in data.all_captions()] + [-1]
    return torch.tensor(c_ids), torch.tensor(t_ids), torch.tensor(digits)


def encode_text(clip, t5, clip_ids, t5_ids):
    """(prompt_embeds, pooled) as FluxPipeline forms them."""
    return t5(t5_ids, output_hidden_states=False)[0], clip(clip_ids, output_hidden_states=False).pooler_output


def pack(latents: torch.Tensor) -> torch.Tensor:
    from diffusers import FluxPipeline

    b, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def position_ids():
    from diffusers import FluxPipeline

    img_ids = FluxPipeline._prepare_latent_image_ids(1, LATENT // 2, LATENT // 2, "cpu", torch.float32)
    return img_ids, torch.zeros(T5_MAX_LENGTH, 3)


def schedule(scheduler_config: dict, n: int, image_seq_len: int = (LATENT // 2) ** 2) -> torch.Tensor:
    """Sigmas [n+1] exactly as FluxPipeline sets them for n steps."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    s = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    mu = calculate_shift(
        image_seq_len,
        s.config.get("base_image_seq_len", 256),
        s.config.get("max_image_seq_len", 4096),
        s.config.get("base_shift", 0.5),
        s.config.get("max_shift", 1.15),
    )
    s.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    return s.sigmas.float().clone()


def train_sigma_shift(scheduler_config: dict) -> float:
    """exp(mu) of the dev schedule at our resolution: training sigmas are shifted the same way."""
    sig = schedule(scheduler_config, 2)
    # time_shift(mu, 1, 0.5) = e^mu / (e^mu + 1)  ->  e^mu = s / (1 - s)
    s = float(sig[1])
    return s / (1 - s)


def velocity(tr, x, sigma, emb, pooled, guidance: float | torch.Tensor | None):
    b = x.shape[0]
    img_ids, txt_ids = position_ids()
    t = sigma if torch.is_tensor(sigma) and sigma.ndim == 1 else torch.full((b,), float(sigma))
    g = None
    if tr.config.guidance_embeds:
        g = guidance if torch.is_tensor(guidance) else torch.full((b,), float(guidance if guidance else 1.0))
    return tr(
        hidden_states=x,
        timestep=t,
        guidance=g,
        pooled_projections=pooled,
        encoder_hidden_states=emb,
        txt_ids=txt_ids[: emb.shape[1]],
        img_ids=img_ids,
    ).sample


@torch.no_grad()
def flow_sample(tr, z, emb, pooled, sigmas, guidance=None):
    x = z
    for i in range(len(sigmas) - 1):
        x = x + (sigmas[i + 1] - sigmas[i]) * velocity(tr, x, sigmas[i], emb, pooled, guidance)
    return x


# ----------------------------------------------------------------------------------------------------
# Teacher


def train_flux(
    out_dir: Path, *, seed: int = 0, progress: bool = True, evaluate: bool = True, **overrides
) -> Path:
    r = apply_overrides(FluxRecipe(), overrides)
    gen = setup_torch(seed)
    times: dict[str, float] = {}
    t_all, c_all = time.perf_counter(), time.process_time()

    x_train, y_train = data.digits_tensors("train")
    t0 = time.perf_counter()
    vae, lat_mean, lat_std = train_recipe_vae(x_train, r, gen, progress)
    shift = float(lat_mean.mean())
    scaling = float(1.0 / (lat_mean - shift).std())
    vae.register_to_config(scaling_factor=scaling, shift_factor=shift)
    times["vae_s"] = time.perf_counter() - t0

    # phase 1: conditional rectified flow
    t0 = time.perf_counter()
    clip, t5 = build_text_encoders(r.clip_hidden, r.t5_dim, r.text_layers)
    tr = build_transformer(r, guidance_embeds=True)
    model = torch.nn.ModuleDict({"tr": tr, "clip": clip, "t5": t5})
    ema = EMA(model, r.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01)
    c_ids, t_ids, _ = caption_token_ids()
    empty = len(c_ids) - 1
    sched_cfg = dict(build_scheduler(dev=True).config)
    e_mu = train_sigma_shift(sched_cfg)

    def sample_sigmas(b):
        u = torch.rand(b, generator=gen)
        return e_mu * u / (1 + (e_mu - 1) * u)

    def batch_latents(idx):
        lat = (
            lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen) - shift
        ) * scaling
        return pack(lat)

    model.train()
    for step in progress_iter(r.iters, "digits-flux", progress):
        set_lr(opt, lr_at(step, r.iters, r.lr, warmup=min(40, r.iters)))
        idx = torch.randint(0, len(x_train), (r.batch,), generator=gen)
        x0 = batch_latents(idx)
        cap = pick_captions(y_train[idx], r.canonical_prob, gen)
        cap = torch.where(
            torch.rand(r.batch, generator=gen) < r.cfg_dropout, torch.full_like(cap, empty), cap
        )
        emb, pooled = encode_text(clip, t5, c_ids[cap], t_ids[cap])
        s = sample_sigmas(r.batch)
        noise = torch.randn(x0.shape, generator=gen)
        xt = (1 - s[:, None, None]) * x0 + s[:, None, None] * noise
        v = velocity(tr, xt, s, emb, pooled, 1.0)
        loss = F.mse_loss(v, noise - x0)
        optimizer_step(opt, loss, model, ema)
    times["phase1_s"] = time.perf_counter() - t0

    # phase 2: guidance distillation into the guidance embedding (text encoders frozen)
    t0 = time.perf_counter()
    base = ema.shadow
    clip_f, t5_f = base["clip"], base["t5"]
    teacher = base["tr"]
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    ema2 = EMA(student, r.ema_decay)
    opt = torch.optim.AdamW(student.parameters(), lr=r.distill_lr, weight_decay=0.0)
    with torch.no_grad():
        cap_emb, cap_pooled = encode_text(clip_f, t5_f, c_ids, t_ids)
    g_lo, g_hi = r.guidance_range
    for step in progress_iter(r.distill_iters, "digits-flux: guidance distillation", progress):
        set_lr(opt, lr_at(step, r.distill_iters, r.distill_lr, warmup=min(20, r.distill_iters)))
        idx = torch.randint(0, len(x_train), (r.batch,), generator=gen)
        x0 = batch_latents(idx)
        cap = pick_captions(y_train[idx], r.canonical_prob, gen)
        s = sample_sigmas(r.batch)
        noise = torch.randn(x0.shape, generator=gen)
        xt = (1 - s[:, None, None]) * x0 + s[:, None, None] * noise
        g = g_lo + (g_hi - g_lo) * torch.rand(r.batch, generator=gen)
        emb, pooled = cap_emb[cap], cap_pooled[cap]
        with torch.no_grad():
            both = velocity(
                teacher,
                torch.cat([xt, xt]),
                torch.cat([s, s]),
                torch.cat([cap_emb[[empty] * r.batch], emb]),
                torch.cat([cap_pooled[[empty] * r.batch], pooled]),
                1.0,
            )
            vu, vc = both.chunk(2)
            target = vu + g[:, None, None] * (vc - vu)
        loss = F.mse_loss(velocity(student, xt, s, emb, pooled, g), target)
        optimizer_step(opt, loss, student, ema2)
    times["guidance_distill_s"] = time.perf_counter() - t0
    train_s, train_cpu_s = time.perf_counter() - t_all, time.process_time() - c_all

    pipe = make_pipeline(
        ema2.shadow if r.distill_iters > 0 else teacher, clip_f, t5_f, vae, build_scheduler(True)
    )
    call_kwargs = call_settings(r.num_inference_steps, r.guidance_scale, max_sequence_length=T5_MAX_LENGTH)
    extra = {
        **heldout_recon_mse(vae),
        "guidance_embedding": "distilled CFG scale (trained on g in "
        f"[{g_lo}, {g_hi}] against CFG of the phase-1 model)"
        if r.distill_iters > 0
        else "untrained (phase 2 skipped)",
    }
    final = _save(
        pipe,
        out_dir,
        name="digits-flux",
        family="flux-dev",
        seed=seed,
        recipe=r,
        call_kwargs=call_kwargs,
        train_s=train_s,
        train_cpu_s=train_cpu_s,
        times=times,
        teacher=None,
        evaluate=evaluate,
        per_digit=r.eval_per_digit,
        extra=extra,
    )
    if evaluate and r.distill_iters > 0:
        record_guidance_check(final)
    return final


def record_guidance_check(model_dir: Path) -> dict | None:
    """Run guidance_check and store it in the card (skipped when digits-clip is missing)."""
    import json

    from . import ZooModelMissing, zoo_path
    from .common import CARD_FILE, write_json

    try:
        zoo_path("digits-clip")
    except ZooModelMissing:
        return None
    res = guidance_check(model_dir)
    card_path = Path(model_dir) / CARD_FILE
    card = json.loads(card_path.read_text())
    card["guidance_check"] = res
    write_json(card_path, card)
    return res


# ----------------------------------------------------------------------------------------------------
# Student (schnell)


def train_flux_schnell(
    out_dir: Path,
    teacher_dir: Path,
    *,
    seed: int = 0,
    progress: bool = True,
    evaluate: bool = True,
    **overrides,
) -> Path:
    r = apply_overrides(SchnellRecipe(), overrides)
    gen = setup_torch(seed)
    times: dict[str, float] = {}
    t_all, c_all = time.perf_counter(), time.process_time()
    teacher = load_frozen_teacher("FluxPipeline", teacher_dir, "transformer")

    t0 = time.perf_counter()
    c_ids, t_ids, _ = caption_token_ids()
    with torch.no_grad():
        cap_emb, cap_pooled = encode_text(teacher.text_encoder, teacher.text_encoder_2, c_ids, t_ids)
    c = teacher.vae.config.latent_channels
    sig_t = schedule(dict(teacher.scheduler.config), r.teacher_steps)
    pairs = teacher_pairs(
        r,
        cap_emb,
        cap_pooled,
        lambda n: pack(torch.randn((n, c, LATENT, LATENT), generator=gen)),
        lambda z, e, p: flow_sample(teacher.transformer, z, e, p, sig_t, r.teacher_guidance),
        gen,
        "schnell: teacher targets",
        progress,
    )
    times["teacher_targets_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cfg = dict(teacher.transformer.config)
    student_recipe = FluxRecipe(
        num_layers=cfg["num_layers"],
        num_single_layers=cfg["num_single_layers"],
        heads=cfg["num_attention_heads"],
        head_dim=cfg["attention_head_dim"],
        rope_axes=tuple(cfg["axes_dims_rope"]),
        clip_hidden=cfg["pooled_projection_dim"],
        t5_dim=cfg["joint_attention_dim"],
    )
    student = build_transformer(student_recipe, guidance_embeds=False)
    missing, unexpected = student.load_state_dict(teacher.transformer.state_dict(), strict=False)
    if missing or any("guidance_embedder" not in k for k in unexpected):
        raise RuntimeError(f"teacher/student mismatch: missing {missing}, unexpected {unexpected}")
    student.train()
    sched_cfg = dict(build_scheduler(dev=False).config)
    scheds = {n: schedule(sched_cfg, n) for n in r.step_choices}
    ema = distill_student(
        student,
        r,
        pairs,
        gen,
        desc="digits-flux-schnell",
        progress=progress,
        sigmas=scheds,
        predict=lambda x, n, j, e, p: velocity(student, x, scheds[n][j], e, p, None),
    )
    times["student_s"] = time.perf_counter() - t0
    train_s, train_cpu_s = time.perf_counter() - t_all, time.process_time() - c_all

    pipe = make_pipeline(
        ema.shadow, teacher.text_encoder, teacher.text_encoder_2, teacher.vae, build_scheduler(dev=False)
    )
    call_kwargs = call_settings(r.num_inference_steps, 0.0, max_sequence_length=T5_MAX_LENGTH)
    return _save(
        pipe,
        out_dir,
        name="digits-flux-schnell",
        family="flux-schnell",
        seed=seed,
        recipe=r,
        call_kwargs=call_kwargs,
        train_s=train_s,
        train_cpu_s=train_cpu_s,
        times=times,
        teacher="digits-flux",
        evaluate=evaluate,
        per_digit=r.eval_per_digit,
        steps_sweep=[n for n in (1, 2, 4) if n != r.num_inference_steps],
    )


@torch.no_grad()
def guidance_check(
    model_dir: Path, per_digit: int = 10, seed: int = 5, scales: tuple[float, ...] = (1.0, 3.5, 6.0)
) -> dict:
    """What the distilled guidance embedding does, measured: digits-clip accuracy and mean probability of
    the prompted digit per guidance value, and the distance of the guidance-3.5 samples to true CFG
    (``true_cfg_scale=3.5`` with the empty negative prompt, guidance input 1) versus that of plain
    guidance-1 samples. Written into the card by train_flux."""
    from diffusers import FluxPipeline

    from .classify import DigitsClassifier, generate_digits

    pipe = FluxPipeline.from_pretrained(str(model_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    clf = DigitsClassifier()
    base = {
        "num_inference_steps": 20,
        "height": data.IMAGE_SIZE,
        "width": data.IMAGE_SIZE,
        "max_sequence_length": T5_MAX_LENGTH,
    }
    out: dict = {"per_guidance": {}}
    images = {}
    for g in scales:
        im, lab = generate_digits(pipe, dict(base, guidance_scale=g), per_digit=per_digit, seed=seed)
        images[g] = im
        logits = clf.logits(im)
        out["per_guidance"][str(g)] = {
            "accuracy": round(float((logits.argmax(1) == lab).float().mean()), 4),
            "mean_p_prompted": round(float(logits.softmax(1)[torch.arange(len(lab)), lab].mean()), 4),
        }
    n = per_digit * data.NUM_CLASSES
    true_cfg, _ = generate_digits(
        pipe,
        dict(base, guidance_scale=1.0, true_cfg_scale=3.5, negative_prompt=[""] * n),
        per_digit=per_digit,
        seed=seed,
        batch_digits=data.NUM_CLASSES,
    )
    if 1.0 in images and 3.5 in images:
        out["mse_to_true_cfg_3.5"] = {
            "guidance_3.5": round(float((images[3.5] - true_cfg).pow(2).mean()), 5),
            "guidance_1.0": round(float((images[1.0] - true_cfg).pow(2).mean()), 5),
        }
    out["n_samples_per_setting"] = n
    return out


# ----------------------------------------------------------------------------------------------------
# Card


def _params(pipe) -> dict[str, int]:
    return pipeline_params(
        pipe,
        "transformer",
        "transformer_blocks",
        lambda n: n.startswith(("transformer_blocks.", "single_transformer_blocks.")),
    )


def _save(pipe, out_dir: Path, **kw) -> Path:
    return save_pipeline(pipe, out_dir, params=_params(pipe), clip_tokenizers=("tokenizer",), **kw)
