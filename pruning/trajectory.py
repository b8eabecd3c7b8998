"""The whole denoising trajectory as a chain of pure steps, and time-step gradient checkpointing.

A diffusers scheduler's ``step()`` advances an internal index, so calling it again while recomputing a step
for the backward pass would corrupt it. Here a step is a pure function of (latent, step index) and of a
:class:`Trajectory` prepared once per prompt and seed with the pipeline's own prompt encoding, initial
noise and sigma schedule; unrolled, it reproduces the pipeline's final latent.

Checkpointed backward (memory O(1) in the number of steps): run every step without a graph keeping only
the latent entering each step, then walk back from the last step, recomputing one step with a graph and
taking its vector-Jacobian product with the incoming gradient. The mask logits' share of each product
accumulates in their ``.grad``; the latent's share becomes the incoming gradient of the step before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

BeforeStep = Callable[[int], None]


@dataclass
class Trajectory:
    latents: torch.Tensor  # initial latent, as the pipeline would start from
    sigmas: torch.Tensor  # n+1 noise levels, the last one the end of sampling
    model: Callable[[nn.Module, torch.Tensor, int], torch.Tensor]  # (denoiser, x, i) -> derivative dx/dsigma
    ancestral_noise: list[torch.Tensor] = field(default_factory=list)  # per-step noise (euler-ancestral)
    ancestral: bool = False

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def step(self, denoiser: nn.Module, x: torch.Tensor, i: int) -> torch.Tensor:
        """One sampling step; a pure function of its inputs."""
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        d = self.model(denoiser, x, i)
        if not self.ancestral:
            return x + (sigma_next - sigma) * d
        # Euler-ancestral: deterministic move to sigma_down plus this step's fixed noise scaled by sigma_up.
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).clamp(min=0).sqrt()
        sigma_down = (sigma_next**2 - sigma_up**2).clamp(min=0).sqrt()
        return x + (sigma_down - sigma) * d + self.ancestral_noise[i].to(x) * sigma_up


def run(traj: Trajectory, denoiser: nn.Module, before_step: BeforeStep | None = None, keep: bool = False):
    """Unroll every step (with whatever grad mode is active). Returns the final latent, or all latents."""
    xs = [traj.latents]
    for i in range(traj.steps):
        if before_step is not None:
            before_step(i)
        xs.append(traj.step(denoiser, xs[-1], i))
        if not keep:
            xs = xs[-1:]
    return xs if keep else xs[-1]


def checkpointed_backward(
    traj: Trajectory,
    denoiser: nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    before_step: BeforeStep | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagate ``loss_fn(final latent)`` into every parameter that requires grad, one step at a time.

    ``before_step(i)`` runs before each step's forward and before its recomputation; it must make the two
    identical (e.g. reseed mask noise from ``i``). Returns (loss, final latent), both detached.
    """
    with torch.no_grad():
        latents = run(traj, denoiser, before_step, keep=True)
    final = latents[-1].detach().requires_grad_(True)
    loss = loss_fn(final)
    (grad,) = torch.autograd.grad(loss, final)
    for i in reversed(range(traj.steps)):
        x = latents[i].detach().requires_grad_(i > 0)
        if before_step is not None:
            before_step(i)
        with torch.enable_grad():
            y = traj.step(denoiser, x, i)
            y.backward(grad)
        if i > 0:
            grad = x.grad
        del y
    return loss.detach(), final.detach()


def full_backward(
    traj: Trajectory,
    denoiser: nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    before_step: BeforeStep | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain backpropagation through the whole unrolled trajectory (memory grows with the step count)."""
    with torch.enable_grad():
        final = run(traj, denoiser, before_step)
        loss = loss_fn(final)
        loss.backward()
    return loss.detach(), final.detach()


# --- preparing a trajectory from a diffusers pipeline ---------------------------------------------------------


class _SDXLModel:
    """Epsilon / v-prediction U-Net with classifier-free guidance, as the SDXL pipeline calls it.

    ``embeds`` and ``added`` (pooled text embedding and time ids) condition on the prompt; the ``negative_``
    pair on the empty prompt, None without guidance."""

    def __init__(
        self, embeds, negative_embeds, added, negative_added, timesteps, sigmas, guidance, prediction
    ):
        self.embeds, self.negative_embeds = embeds, negative_embeds
        self.added, self.negative_added = added, negative_added
        self.timesteps, self.sigmas, self.guidance, self.prediction = timesteps, sigmas, guidance, prediction
        self.guided = negative_embeds is not None

    def raw(self, unet, x_in, t, guided: bool = False):
        """Network output at a model-scaled input ``x_in`` and training timestep ``t``."""
        if guided:
            x_in = torch.cat([x_in, x_in])
            embeds = torch.cat([self.negative_embeds, self.embeds])
            added = {k: torch.cat([self.negative_added[k], self.added[k]]) for k in self.added}
        else:
            embeds, added = self.embeds, self.added
        return unet(x_in, t, encoder_hidden_states=embeds, added_cond_kwargs=added, return_dict=False)[0]

    @classmethod
    def stack(cls, models: list[_SDXLModel]) -> _SDXLModel:
        m = models[0]

        def cat(name):
            return torch.cat([getattr(k, name) for k in models])

        def cat_dict(name):
            return {key: torch.cat([getattr(k, name)[key] for k in models]) for key in getattr(m, name)}

        return cls(
            cat("embeds"),
            cat("negative_embeds") if m.guided else None,
            cat_dict("added"),
            cat_dict("negative_added") if m.guided else None,
            m.timesteps,
            m.sigmas,
            m.guidance,
            m.prediction,
        )

    def __call__(self, unet, x, i):
        sigma = self.sigmas[i]
        out = self.raw(unet, x / (sigma**2 + 1).sqrt(), self.timesteps[i], guided=self.guided)
        if self.guided:
            uncond, text = out.chunk(2)
            out = uncond + self.guidance * (text - uncond)
        if self.prediction == "epsilon":
            return out.to(x.dtype)
        if self.prediction == "v_prediction":  # derivative (x - x0) / sigma written out for v-prediction
            x0 = out * (-sigma / (sigma**2 + 1).sqrt()) + x / (sigma**2 + 1)
            return ((x - x0) / sigma).to(x.dtype)
        raise TypeError(f"unsupported prediction_type {self.prediction!r} (epsilon or v_prediction)")


def _encode(pipe, memo: dict | None, **kwargs):
    """``pipe.encode_prompt(**kwargs)``, memoised in ``memo`` when given (one encoding per prompt and settings)."""
    if memo is None:
        return pipe.encode_prompt(**kwargs)
    key = repr(sorted(kwargs.items()))
    if key not in memo:
        memo[key] = pipe.encode_prompt(**kwargs)
    return memo[key]


def sdxl_trajectory(
    pipe, prompt, generator, steps, guidance, height, width, max_sequence_length=None, memo=None
) -> Trajectory:
    """SDXL-style pipelines (``max_sequence_length`` unused: CLIP encoders read 77 tokens)."""
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    scheduler = pipe.scheduler
    if not isinstance(scheduler, (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)):
        raise TypeError(
            f"mask training needs a stateless sampler; {type(scheduler).__name__} is not supported "
            "(use EulerDiscreteScheduler or EulerAncestralDiscreteScheduler)"
        )
    device = pipe._execution_device
    height = height or pipe.default_sample_size * pipe.vae_scale_factor
    width = width or pipe.default_sample_size * pipe.vae_scale_factor
    guided = guidance > 1.0
    embeds, negative_embeds, pooled, negative_pooled = _encode(
        pipe, memo, prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=guided
    )
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps.clone()
    sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32).clone()
    latents = pipe.prepare_latents(
        embeds.shape[0], pipe.unet.config.in_channels, height, width, embeds.dtype, device, generator
    )
    proj_dim = (
        pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
    )
    time_ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), embeds.dtype, proj_dim)
    time_ids = time_ids.to(device).repeat(latents.shape[0], 1)
    added = {"text_embeds": pooled.to(device), "time_ids": time_ids}
    negative_added = {"text_embeds": negative_pooled.to(device), "time_ids": time_ids} if guided else None
    model = _SDXLModel(
        embeds,
        negative_embeds if guided else None,
        added,
        negative_added,
        timesteps,
        sigmas,
        guidance,
        scheduler.config.prediction_type,
    )
    ancestral = isinstance(scheduler, EulerAncestralDiscreteScheduler)
    noise = (
        [
            torch.randn(latents.shape, generator=generator, device=generator.device, dtype=latents.dtype)
            for _ in range(steps)
        ]
        if ancestral
        else []
    )
    return Trajectory(latents, sigmas, model, noise, ancestral)


class _FluxModel:
    """Rectified-flow transformer with packed latents and an optional guidance embedding."""

    def __init__(self, embeds, pooled, text_ids, image_ids, timesteps, guidance):
        self.embeds, self.pooled, self.text_ids, self.image_ids = embeds, pooled, text_ids, image_ids
        self.timesteps, self.guidance = timesteps, guidance

    def raw(self, transformer, x, t):
        """Velocity at packed latent ``x`` and timestep ``t`` in [0, 1000]."""
        guide = None
        if transformer.config.guidance_embeds:
            guide = torch.full((x.shape[0],), float(self.guidance), device=x.device, dtype=torch.float32)
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0]).to(x.dtype)
        return transformer(
            hidden_states=x,
            timestep=t / 1000,
            guidance=guide,
            pooled_projections=self.pooled,
            encoder_hidden_states=self.embeds,
            txt_ids=self.text_ids,
            img_ids=self.image_ids,
            return_dict=False,
        )[0]

    @classmethod
    def stack(cls, models: list[_FluxModel]) -> _FluxModel:
        m = models[0]  # position ids are per token, shared by the batch
        return cls(
            torch.cat([k.embeds for k in models]),
            torch.cat([k.pooled for k in models]),
            m.text_ids,
            m.image_ids,
            m.timesteps,
            m.guidance,
        )

    def __call__(self, transformer, x, i):
        return self.raw(transformer, x, self.timesteps[i]).to(x.dtype)


def flux_trajectory(pipe, prompt, generator, steps, guidance, height, width, max_sequence_length, memo=None):
    """FLUX-style pipelines: packed latents, the shifted flow-matching schedule."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = pipe.scheduler
    if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler) or scheduler.config.get(
        "stochastic_sampling"
    ):
        raise TypeError(
            f"mask training supports FlowMatchEulerDiscreteScheduler; got {type(scheduler).__name__}"
        )
    device = pipe._execution_device
    height = height or pipe.default_sample_size * pipe.vae_scale_factor
    width = width or pipe.default_sample_size * pipe.vae_scale_factor
    embeds, pooled, text_ids = _encode(
        pipe, memo, prompt=prompt, prompt_2=None, device=device, max_sequence_length=max_sequence_length
    )
    latents, image_ids = pipe.prepare_latents(
        embeds.shape[0],
        pipe.transformer.config.in_channels // 4,
        height,
        width,
        embeds.dtype,
        device,
        generator,
    )
    config = scheduler.config
    mu = calculate_shift(
        latents.shape[1],
        config.get("base_image_seq_len", 256),
        config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5),
        config.get("max_shift", 1.15),
    )
    sigmas = None if config.get("use_flow_sigmas") else np.linspace(1.0, 1 / steps, steps)
    scheduler.set_timesteps(steps, device=device, sigmas=sigmas, mu=mu)
    model = _FluxModel(embeds, pooled, text_ids, image_ids, scheduler.timesteps.clone(), guidance)
    return Trajectory(latents, scheduler.sigmas.to(device=device, dtype=torch.float32).clone(), model)


def calibration_pairs(prompts, seed: int = 0, what: str = "ecodiff") -> list[tuple[str, int]]:
    """(prompt, seed) pairs from strings (seeded ``seed + index``) and/or explicit (prompt, seed) pairs."""
    pairs = []
    for k, item in enumerate(prompts):
        if isinstance(item, str):
            pairs.append((item, seed + k))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            pairs.append((item[0], int(item[1])))
        else:
            raise TypeError(f"calibration item {k} must be a prompt or a (prompt, seed) pair; got {item!r}")
    if not pairs:
        raise ValueError(f"{what} needs at least one calibration prompt")
    return pairs


def stack_models(trajs: list[Trajectory]):
    """The batched model closure of several trajectories (conditioning concatenated), without stacking
    their latents and noise: what a caller that supplies its own inputs needs."""
    return trajs[0].model if len(trajs) == 1 else trajs[0].model.stack([t.model for t in trajs])


def stack(trajs: list[Trajectory]) -> Trajectory:
    """One batched trajectory from several prepared with the same schedule (e.g. one per prompt x seed pair).

    Sample ``k`` of the result follows exactly the trajectory ``trajs[k]`` would on its own: latents,
    conditioning and per-step ancestral noise are concatenated along the batch; the schedule is shared.
    """
    if len(trajs) == 1:
        return trajs[0]
    first = trajs[0]
    for t in trajs[1:]:
        if type(t.model) is not type(first.model) or not torch.equal(t.sigmas, first.sigmas):
            raise ValueError("only trajectories with the same model type and sigma schedule can be stacked")
    noise = [torch.cat([t.ancestral_noise[i] for t in trajs]) for i in range(len(first.ancestral_noise))]
    return Trajectory(
        torch.cat([t.latents for t in trajs]),
        first.sigmas,
        stack_models(trajs),
        noise,
        first.ancestral,
    )
