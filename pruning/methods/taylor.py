"""Diff-Pruning (Fang et al., NeurIPS 2023): first-order Taylor importance over the low-noise timesteps.

Calibration data are the unpruned model's own final latents for the calibration prompts (a text-to-image
latent model has no "real latents"). Starting from the lowest noise level, the denoising loss of each
timestep is backpropagated and the weight gradients summed; the walk stops at the first timestep whose loss
falls below ``threshold`` times the largest loss seen so far (threshold 0 keeps every visited step).
A unit's importance is sum |w * g| over the weights it owns, divided by their number so that heads and FFN
units are comparable under global ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
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
    if architecture_of_pipe(pipe).flow_matching:  # rectified flow: x_s = (1 - s) x0 + s noise
        s = (t + 1) / n_train
        return (1 - s) * x0 + s * noise, torch.tensor(s * 1000.0), noise - x0  # target: the velocity
    alpha_bar = sched.alphas_cumprod[t].to(x0.dtype)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
    if sched.config.prediction_type == "v_prediction":
        return x_t, torch.tensor(t), alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    return x_t, torch.tensor(t), noise


@dataclass
class _CalibrationShare:
    """One process's share of the calibration batch: the unpruned model's own final latents ``x0`` (the
    "images"), the noise added to them, and the conditioned model closure that predicts for them."""

    x0: torch.Tensor
    noise: torch.Tensor
    model: Callable
    elements: int  # of the whole batch: the loss is the mean squared error over every process's samples

    def loss(self, pipe, denoiser: nn.Module, t: int) -> torch.Tensor:
        """This share's part of the denoising loss at training timestep ``t``, with its graph."""
        x_t, t_arg, target = _noisy_sample(pipe, self.x0, self.noise, t)
        pred = self.model.raw(denoiser, x_t, t_arg)
        return (pred.float() - target.float()).pow(2).sum() / self.elements


def _calibration_share(
    pipe, denoiser: nn.Module, pairs: list[tuple[str, int]], mine: list[int], sampling: dict, seed: int
) -> _CalibrationShare | None:
    """The share of the calibration pairs indexed by ``mine`` (None when empty; every process calls this)."""
    settings = {
        "guidance": sampling["guidance"],
        "height": sampling.get("height"),
        "width": sampling.get("width"),
        "max_sequence_length": sampling.get("max_sequence_length", 512),
    }
    with distributed.together("taylor calibration"), torch.no_grad():
        x0 = [
            trajectory.run(
                prepare_trajectory(pipe, pairs[k][0], pairs[k][1], steps=sampling["steps"], **settings),
                denoiser,
            )
            for k in mine
        ]
        # One conditioned model evaluation per timestep: the trajectory's model closure at a chosen input.
        prompts = [pairs[k][0] for k in mine]
        model = prepare_trajectory(pipe, prompts, seed, steps=1, **settings).model if mine else None
    if not mine:
        return None
    x0 = torch.cat(x0)
    noise = torch.randn((len(pairs), *x0.shape[1:]), generator=torch.Generator().manual_seed(seed))
    return _CalibrationShare(x0, noise[mine].to(x0), model, x0[0].numel() * len(pairs))


@contextmanager
def _gradients_only_for(denoiser: nn.Module, params: list[nn.Parameter]):
    """Only ``params`` require grad inside; after, every parameter's flag is restored and its grad dropped."""
    previous = {id(p): p.requires_grad for p in denoiser.parameters()}
    for p in denoiser.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    try:
        yield
    finally:
        for p in denoiser.parameters():
            p.requires_grad_(previous[id(p)])
            p.grad = None


def _accumulate_gradients(
    pipe, denoiser: nn.Module, share: _CalibrationShare | None, cfg: TaylorConfig, progress: bool
) -> list[dict]:
    """Backpropagate the denoising loss of each visited timestep, least noise first, until one falls below
    ``threshold`` times the largest so far; returns the (timestep, loss) of every timestep kept."""
    n_train = pipe.scheduler.config.num_train_timesteps
    timesteps = list(range(0, min(n_train, cfg.max_timesteps), max(1, cfg.timestep_stride)))
    losses, max_loss = [], 0.0
    for t in tqdm(timesteps, desc="taylor", disable=not progress, leave=False):
        loss = None
        with distributed.together("taylor scoring"), torch.enable_grad():
            if share is not None:
                loss = share.loss(pipe, denoiser, t)
        value = distributed.sum_floats([loss.item() if loss is not None else 0.0])[0]
        if losses and value < cfg.threshold * max_loss:
            break
        if loss is not None:
            loss.backward()
        max_loss = max(max_loss, value)
        losses.append({"t": t, "loss": value})
    return losses


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
    denoiser = denoiser_of(pipe)
    # Several processes split the calibration batch (prompt k on rank k % world) and sum the gradients.
    rank, world = distributed.rank_world()
    mine = [k for k in range(len(pairs)) if k % world == rank]
    share = _calibration_share(pipe, denoiser, pairs, mine, sampling, cfg.seed)
    params = owned_parameters(denoiser, groups)
    with _gradients_only_for(denoiser, params):
        losses = _accumulate_gradients(pipe, denoiser, share, cfg, progress=cfg.progress and rank == 0)
        distributed.sum_grads_(params)
        scores = {
            g.name: (per_unit(denoiser, g, lambda p: (p * p.grad).abs()) / g.params_per_unit).float()
            for g in groups
        }
    return scores, {"timesteps_used": len(losses), "losses": losses, "threshold": cfg.threshold}
