"""Diff-Pruning (Fang et al., NeurIPS 2023): first-order Taylor importance over the low-noise timesteps.

Calibration data are the unpruned model's own final latents for the calibration prompts (a text-to-image
latent model has no "real latents"). Starting from the lowest noise level, the denoising loss of each
timestep is backpropagated and the weight gradients summed; the walk stops at the first timestep whose loss
falls below ``threshold`` times the largest loss seen so far (threshold 0 keeps every visited step).
A unit's importance is sum |w * g| over the weights it owns, divided by their number so that heads and FFN
units are comparable under global ranking.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .. import distributed, trajectory
from ..architectures import architecture_of_pipe, denoiser_of, prepare_trajectory
from ..config import TaylorConfig
from ..targets import UnitGroup
from .unit_weights import owned_parameters, per_unit


def _noisy_sample(pipe, x0, noise, t: int):
    """(model input, timestep argument, regression target) at training timestep ``t`` (0 = least noise)."""
    sched = pipe.scheduler
    n_train = sched.config.num_train_timesteps
    if architecture_of_pipe(
        pipe
    ).flow_matching:  # rectified flow: x_s = (1 - s) x0 + s * noise, target noise - x0
        s = (t + 1) / n_train
        return (1 - s) * x0 + s * noise, torch.tensor(s * 1000.0), noise - x0
    ab = sched.alphas_cumprod[t].to(x0.dtype)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    if sched.config.prediction_type == "v_prediction":
        return x_t, torch.tensor(t), ab.sqrt() * noise - (1 - ab).sqrt() * x0
    return x_t, torch.tensor(t), noise


def taylor_scores(
    pipe,
    groups: list[UnitGroup],
    prompts: list[str],
    sampling: dict,
    config: TaylorConfig | None = None,
    checkpoint_dir=None,  # one pass over a batch: nothing to resume
) -> tuple[dict[str, torch.Tensor], dict]:
    """Diff-Pruning importance of every unit. ``sampling`` holds steps/guidance/height/width/max_sequence_length.

    ``prompts`` are strings (sample k seeded ``seed + k``) or (prompt, seed) pairs; the first ``batch`` are used.
    """
    cfg = config or TaylorConfig()
    pairs = trajectory.calibration_pairs(list(prompts)[: cfg.batch], cfg.seed, "taylor")
    prompts, seeds = [p for p, _ in pairs], [s for _, s in pairs]
    denoiser = denoiser_of(pipe)
    steps, guidance = sampling["steps"], sampling["guidance"]
    geometry = {k: sampling.get(k) for k in ("height", "width")}
    msl = sampling.get("max_sequence_length", 512)

    # Several processes split the calibration batch (prompt k on rank k % world) and sum the gradients.
    rank, world = distributed.rank_world()
    mine = [k for k in range(len(prompts)) if k % world == rank]

    # Calibration "images": the unpruned model's own final latents, one per prompt.
    with distributed.together("taylor calibration"), torch.no_grad():
        x0 = [
            trajectory.run(
                prepare_trajectory(
                    pipe,
                    prompts[k],
                    seeds[k],
                    steps=steps,
                    guidance=guidance,
                    max_sequence_length=msl,
                    **geometry,
                ),
                denoiser,
            )
            for k in mine
        ]
        # One conditioned model evaluation per timestep: the trajectory's model closure at a chosen input.
        cond = (
            prepare_trajectory(
                pipe,
                [prompts[k] for k in mine],
                cfg.seed,
                steps=1,
                guidance=guidance,
                max_sequence_length=msl,
                **geometry,
            ).model
            if mine
            else None
        )
    x0 = torch.cat(x0) if mine else None
    elements = 0  # of the whole batch: the loss is the mean squared error over every rank's samples
    if mine:
        gen = torch.Generator().manual_seed(cfg.seed)
        noise = torch.randn((len(prompts), *x0.shape[1:]), generator=gen)[mine].to(x0)
        elements = x0[0].numel() * len(prompts)

    params = owned_parameters(denoiser, groups)
    previous = {id(p): p.requires_grad for p in denoiser.parameters()}
    for p in denoiser.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    losses, max_loss, kept = [], 0.0, 0
    try:
        n_train = pipe.scheduler.config.num_train_timesteps
        ts = list(range(0, min(n_train, cfg.max_timesteps), max(1, cfg.timestep_stride)))
        for t in tqdm(ts, desc="taylor", disable=not cfg.progress or rank != 0, leave=False):
            loss = None
            with distributed.together("taylor scoring"), torch.enable_grad():
                if mine:
                    x_t, t_arg, target = _noisy_sample(pipe, x0, noise, t)
                    pred = cond.raw(denoiser, x_t, t_arg)
                    loss = (pred.float() - target.float()).pow(2).sum() / elements
            value = distributed.sum_floats([loss.item() if loss is not None else 0.0])[0]
            if kept > 0 and value < cfg.threshold * max_loss:
                break
            if loss is not None:
                loss.backward()
            max_loss, kept = max(max_loss, value), kept + 1
            losses.append({"t": t, "loss": value})
        distributed.sum_grads_(params)
        scores = {
            g.name: (per_unit(denoiser, g, lambda p: (p * p.grad).abs()) / g.params_per_unit).float()
            for g in groups
        }
    finally:
        for p in denoiser.parameters():
            p.requires_grad_(previous[id(p)])
            p.grad = None
    return scores, {"timesteps_used": kept, "losses": losses, "threshold": cfg.threshold}
