"""Shared training helpers for the zoo recipes (torch is imported here, not in the package root)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import data

CARD_FILE = "zoo_card.json"
TIME_NOTE = (
    "training_time_s is wall-clock on the machine that trained it (shared 2-core CPU, other jobs "
    "running); training_cpu_time_s is this process's CPU time"
)


def train_threads() -> int:
    """CPU threads for training: ECODIFF_ZOO_THREADS if set, else 1.

    Measured on the shared 2-core machines: one training step of the digits-sdxl UNet took 0.32 s with
    one thread, and 15.8 s with two (at load 3; 18.6 s vs 2.8 s at load 9.6), because the two intra-op
    threads keep waiting for each other whenever anything else runs. Idle, two threads gained ~20%.
    """
    env = os.environ.get("ECODIFF_ZOO_THREADS")
    return max(1, int(env)) if env else 1


def setup_torch(seed: int) -> torch.Generator:
    """Thread count for a shared machine (see train_threads), fixed seeds; returns a CPU generator."""
    torch.set_num_threads(train_threads())
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def count_params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def apply_overrides(cfg, overrides: dict[str, Any]):
    """Return a copy of a recipe dataclass with fields replaced; unknown names are refused."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"Unknown recipe setting(s) {unknown} for {type(cfg).__name__}; known: {sorted(fields)}"
        )
    return dataclasses.replace(cfg, **overrides)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 5% of the base rate."""
    if step < warmup:
        return base * (step + 1) / max(1, warmup)
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


class EMA:
    """Exponential moving average of a module's floating-point parameters (with a warmup of the decay)."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.995):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow.parameters(), module.parameters(), strict=True):
            s.lerp_(p.detach(), 1 - d)
        for s, b in zip(self.shadow.buffers(), module.buffers(), strict=True):
            s.copy_(b)


def progress_iter(n: int, desc: str, enabled: bool) -> Iterator[int]:
    if not enabled:
        yield from range(n)
        return
    from tqdm.auto import tqdm

    yield from tqdm(range(n), desc=desc, mininterval=2.0, leave=False)


@contextmanager
def timed(store: dict[str, float], key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def sample_batch(n_items: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, n_items, (batch,), generator=gen)


def shift_images(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random integer translations (per image, zero/background padded) for augmentation."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out


def optimizer_step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    module: torch.nn.Module | None = None,
    ema: EMA | None = None,
    max_grad_norm: float = 1.0,
) -> None:
    """zero_grad, backward, step; with ``module``, its gradients are clipped to ``max_grad_norm`` before the
    step and ``ema`` (if given) is updated from it after."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if module is not None:
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    opt.step()
    if ema is not None:
        ema.update(module)


# ----------------------------------------------------------------------------------------------------
# VAE


@dataclasses.dataclass
class VAEConfig:
    block_out_channels: tuple[int, ...] = (16, 32)
    latent_channels: int = 4
    iters: int = 400
    batch: int = 64
    lr: float = 2e-3
    kl_weight: float = 1e-3


def build_vae(cfg: VAEConfig, image_size: int):
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=8,
        sample_size=image_size,
    )


def train_vae(images: torch.Tensor, cfg: VAEConfig, gen: torch.Generator, progress: bool):
    """Train a small AutoencoderKL on images in [-1, 1] (L1 + MSE reconstruction + small KL)."""
    vae = build_vae(cfg, images.shape[-1])
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    vae.train()
    for step in progress_iter(cfg.iters, "vae", progress):
        set_lr(opt, lr_at(step, cfg.iters, cfg.lr, warmup=min(20, cfg.iters)))
        x = shift_images(images[sample_batch(len(images), cfg.batch, gen)], 1, gen)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + cfg.kl_weight * kl
        optimizer_step(opt, loss)
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def encode_posteriors(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of the VAE for all images (unscaled latent space)."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(images[i : i + batch]).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def vae_reconstruction_mse(vae, images: torch.Tensor) -> float:
    mean, _ = encode_posteriors(vae, images)
    rec = torch.cat([vae.decode(mean[i : i + 256]).sample for i in range(0, len(mean), 256)])
    return float(F.mse_loss(rec.clamp(-1, 1), images))


# ----------------------------------------------------------------------------------------------------
# Shared by the generator recipes (digits-sdxl and -turbo, digits-flux and -schnell)


def pick_captions(labels: torch.Tensor, canonical_prob: float, gen: torch.Generator) -> torch.Tensor:
    """Index into data.all_captions() for each label: the canonical prompt or a random variant."""
    n_var = len(data.CAPTION_TEMPLATES)
    var = torch.randint(0, n_var, labels.shape, generator=gen)
    var = torch.where(torch.rand(labels.shape, generator=gen) < canonical_prob, torch.zeros_like(var), var)
    return labels * n_var + var


def train_recipe_vae(x_train: torch.Tensor, r, gen: torch.Generator, progress: bool):
    """The teachers' VAE (``r.vae_channels``, ``r.vae_iters``) and the posterior means and stds of x_train."""
    vae = train_vae(
        x_train, VAEConfig(block_out_channels=tuple(r.vae_channels), iters=r.vae_iters), gen, progress
    )
    lat_mean, lat_std = encode_posteriors(vae, x_train)
    return vae, lat_mean, lat_std


def heldout_recon_mse(vae) -> dict[str, float]:
    """The card entry for the VAE's reconstruction error on the held-out digits."""
    return {"vae_heldout_recon_mse": round(vae_reconstruction_mse(vae, data.digits_tensors("heldout")[0]), 5)}


def call_settings(steps: int, guidance: float, **extra: Any) -> dict[str, Any]:
    """A generator's default pipeline call (the card's ``call_kwargs``) at the zoo's image size."""
    return {
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "height": data.IMAGE_SIZE,
        "width": data.IMAGE_SIZE,
        **extra,
    }


def pipeline_params(pipe, denoiser: str, blocks_key: str, in_blocks: Callable[[str], bool]) -> dict[str, int]:
    """Parameter counts for the card: each component, the total, and the denoiser's transformer blocks."""
    p = {
        denoiser: count_params(getattr(pipe, denoiser)),
        "text_encoder": count_params(pipe.text_encoder),
        "text_encoder_2": count_params(pipe.text_encoder_2),
        "vae": count_params(pipe.vae),
    }
    p["total"] = sum(p.values())
    p[blocks_key] = sum(q.numel() for n, q in getattr(pipe, denoiser).named_parameters() if in_blocks(n))
    return p


def load_frozen_teacher(pipeline_class: str, path: Path, denoiser: str):
    """A teacher pipeline from its folder, with its denoiser, text encoders and VAE in eval mode and frozen."""
    import diffusers

    teacher = getattr(diffusers, pipeline_class).from_pretrained(str(path), local_files_only=True)
    for m in (getattr(teacher, denoiser), teacher.text_encoder, teacher.text_encoder_2, teacher.vae):
        m.eval().requires_grad_(False)
    return teacher


@dataclasses.dataclass
class StudentRecipe:
    """Few-step student distillation (digits-sdxl-turbo, digits-flux-schnell)."""

    n_pairs: int = 1600
    teacher_steps: int = 20
    teacher_guidance: float = 5.0
    iters: int = 350
    batch: int = 64
    lr: float = 3e-4
    ema_decay: float = 0.99
    step_choices: tuple[int, ...] = (1, 2, 4)
    num_inference_steps: int = 4
    eval_per_digit: int = 20


@dataclasses.dataclass
class DistillPairs:
    """The students' training data: a caption per pair, fixed noises and the teacher's final latents."""

    cap_emb: torch.Tensor  # text conditioning of every caption variant
    cap_pooled: torch.Tensor
    pair_cap: torch.Tensor  # caption index of each pair
    noise: torch.Tensor
    targets: torch.Tensor

    def cond(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cap_emb[self.pair_cap[idx]], self.cap_pooled[self.pair_cap[idx]]


def teacher_pairs(
    r: StudentRecipe,
    cap_emb: torch.Tensor,
    cap_pooled: torch.Tensor,
    noise_fn: Callable[[int], torch.Tensor],
    sample: Callable[..., torch.Tensor],
    gen: torch.Generator,
    desc: str,
    progress: bool,
    chunk: int = 200,
) -> DistillPairs:
    """Teacher targets balanced over digits and caption variants: ``noise_fn(n)`` draws n noises (from
    ``gen``), ``sample(noise, emb, pooled)`` runs the teacher's sampler on them."""
    labels = torch.arange(r.n_pairs) % data.NUM_CLASSES
    pair_cap = pick_captions(labels, 0.5, gen)
    noise = noise_fn(r.n_pairs)
    targets = []
    for i in progress_iter(math.ceil(r.n_pairs / chunk), desc, progress):
        sl = slice(i * chunk, (i + 1) * chunk)
        targets.append(sample(noise[sl], cap_emb[pair_cap[sl]], cap_pooled[pair_cap[sl]]))
    return DistillPairs(cap_emb, cap_pooled, pair_cap, noise, torch.cat(targets))


def distill_student(
    student: torch.nn.Module,
    r: StudentRecipe,
    pairs: DistillPairs,
    gen: torch.Generator,
    *,
    sigmas: dict[int, torch.Tensor],
    predict: Callable[..., torch.Tensor],
    desc: str,
    progress: bool,
    init_sigma: dict[int, float] | None = None,
) -> EMA:
    """Unroll the student's own n-step schedule (n from ``r.step_choices``) from a pair's noise, without
    gradients up to a random step k, and regress its denoised estimate there onto the teacher's latent.

    ``sigmas[n]``: the n-step schedule's sigmas (n+1); ``predict(x, n, j, emb, pooled)``: the student's
    output at step j, the Euler update being ``x + (sigma[j+1] - sigma[j]) * output``; ``init_sigma[n]``
    scales the starting noise (omitted: unscaled). Returns the EMA of the student.
    """
    ema = EMA(student, r.ema_decay)
    opt = torch.optim.AdamW(student.parameters(), lr=r.lr, weight_decay=0.0)
    for step in progress_iter(r.iters, desc, progress):
        set_lr(opt, lr_at(step, r.iters, r.lr, warmup=min(20, r.iters)))
        n = r.step_choices[int(torch.randint(0, len(r.step_choices), (1,), generator=gen))]
        k = int(torch.randint(0, n, (1,), generator=gen))
        sig = sigmas[n]
        idx = torch.randint(0, r.n_pairs, (r.batch,), generator=gen)
        e, p = pairs.cond(idx)
        x = pairs.noise[idx] if init_sigma is None else pairs.noise[idx] * init_sigma[n]
        with torch.no_grad():
            for j in range(k):
                x = x + (sig[j + 1] - sig[j]) * predict(x, n, j, e, p)
        x0 = x - sig[k] * predict(x, n, k, e, p)
        loss = F.mse_loss(x0, pairs.targets[idx])
        optimizer_step(opt, loss, student, ema)
    return ema


# ----------------------------------------------------------------------------------------------------
# Saving


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def weight_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*.safetensors"))


def replace_dir(tmp: Path, final: Path) -> Path:
    """Move a freshly written directory into place (the old one is removed only after success)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for p in [Path(tmp), *Path(tmp).rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # mkdtemp makes 0700 folders; safetensors writes 0600
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    shutil.move(str(tmp), str(final))
    if old.exists():
        shutil.rmtree(old)
    return final


def write_clip_tokenizer_files(tok_dir: Path) -> None:
    """Add vocab.json / merges.txt next to tokenizer.json (older transformers read these)."""
    from .tokenization import clip_vocab_and_merges

    vocab, merges = clip_vocab_and_merges()
    (tok_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
