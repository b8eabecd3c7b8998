"""EcoDiff: learn one mask logit per unit with an objective over the whole denoising trajectory.

Each optimizer step draws ``batch x accumulate`` calibration samples, i.e. (prompt, seed) pairs; a batch
of them runs as one batched trajectory. The loss of a sample is the MSE between the masked model's final
latent and the unmasked model's final latent from the same prompt and initial noise (computed once per
pair), divided by the variance of that reference latent (``normalize_mse``), so the loss scale, and with
it learning rates and multipliers, carry over from the digits zoo to SDXL and FLUX. Gradients come from
time-step checkpointing (exact, memory flat in the step count) or from plain backpropagation.

Sparsity (``controller``):
- ``lagrangian`` (default): the expected share of prunable parameters removed (from each gate's
  probability of being closed and the parameters each unit carries, see :mod:`.sparsity`) is driven to
  ``target`` by a Lagrangian with damped dual ascent, the target ramped in over ``warmup`` of the steps.
  The masks are then specific to the target ratio: train one set per ratio.
- ``none``: the paper's fixed penalty, ``beta_reg`` times the expected kept share; one mask set serves
  every ratio, and the plan's cut falls wherever the logits rank it.

What the official code does, and what we default to (measured on the digits zoo, README "EcoDiff"):

| setting | official | default here |
|---|---|---|
| sparsity | fixed L1 penalty, mean over layers | Lagrangian on the parameter-weighted expected share |
| loss | MSE of final latents | MSE / Var(reference) |
| mask noise | bounded (SDXL +-1.1, FLUX +-2.4 logits), redrawn at every call | unbounded, seeded per step |
| weight decay | 0.01 (AdamW default) | 0 |
| learning rate | 0.1 (FLUX heads: 0.5) | 0.1 (the zoo suites: 0.2 for 150 steps) |
| optimizer steps | ~100 (100 prompts x 4 epochs, a step per 4) | set per suite: 150 on the zoo, 200 at paper scale |

Training checkpoints its logits, optimizer and controller state and position after every optimizer
step, so an interrupted run resumes to the same logits; a non-finite or diverging loss stops it with a
clear message, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from .. import distributed, trajectory
from ..architectures import denoiser_of, prepare_trajectories
from ..config import EcoDiffConfig
from ..masks import OPEN_SHIFT, MaskSet
from ..targets import UnitGroup
from .mask_training import MaskTrainer, SampleLoss


def _sampling_key(sampling: dict) -> dict:
    return {k: sampling.get(k) for k in ("steps", "guidance", "height", "width", "max_sequence_length")}


def _schedule(n: int, per_step: int, steps: int, seed: int) -> list[list[int]]:
    """Sample indices of every optimizer step: consecutive slices of per-epoch permutations of range(n)."""
    stream: list[int] = []
    epoch = 0
    while len(stream) < steps * per_step:
        stream += torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        epoch += 1
    return [stream[k * per_step : (k + 1) * per_step] for k in range(steps)]


class _Calibration:
    """Trajectories and unmasked references of the calibration pairs, prepared once. Several processes
    each compute the references of one block of the pairs and broadcast them."""

    def __init__(
        self, pipe, denoiser, masks: MaskSet, pairs: list[tuple[str, int]], sampling: dict, batch: int
    ):
        self.trajs = prepare_trajectories(pipe, pairs, sampling)
        rank, world = distributed.rank_world()
        n, first = len(self.trajs), self.trajs[0].latents
        cuts = [n * r // world for r in range(world + 1)]  # rank r: pairs cuts[r] .. cuts[r + 1] - 1
        self.refs = torch.empty((n, *first.shape[1:]), dtype=torch.float32, device=first.device)
        with masks.using("off"), torch.no_grad(), distributed.together("calibration references"):
            for i in range(cuts[rank], cuts[rank + 1], batch):
                j = min(i + batch, cuts[rank + 1])
                self.refs[i:j] = trajectory.run(trajectory.stack(self.trajs[i:j]), denoiser).float()
        for r in range(world):
            distributed.broadcast_(self.refs[cuts[r] : cuts[r + 1]], src=r)
        self.ref_var = self.refs.flatten(1).var(dim=1).clamp_min(1e-12)

    def batch(self, idx: list[int]) -> tuple[trajectory.Trajectory, torch.Tensor, torch.Tensor]:
        return trajectory.stack([self.trajs[i] for i in idx]), self.refs[idx], self.ref_var[idx]


def _fingerprint(cfg: EcoDiffConfig, sampling: dict, pairs, groups: list[UnitGroup]) -> dict:
    """What a checkpoint must match to be resumed: the settings, the calibration and the unit groups."""
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k != "progress"},
        "sampling": _sampling_key(sampling),
        "pairs": pairs,
        "groups": [g.name for g in groups],
    }


def _sample_loss(
    calib: _Calibration, schedule: list[list[int]], denoiser, masks: MaskSet, cfg: EcoDiffConfig
) -> SampleLoss:
    """The trainer's callback: backpropagate micro-batch ``m`` of optimizer step ``step`` into the logits and
    return its normalized MSE (NaN when the loss is not finite)."""
    per_step = cfg.batch * cfg.accumulate
    backward = trajectory.checkpointed_backward if cfg.checkpointing else trajectory.full_backward

    def sample_loss(step: int, m: int) -> float:
        idx = schedule[step][m * cfg.batch : (m + 1) * cfg.batch]
        traj, ref, var = calib.batch(idx)
        weight = (1.0 / var if cfg.normalize_mse else torch.ones_like(var)) / per_step

        def loss_fn(z):
            return ((z.float() - ref).pow(2).flatten(1).mean(dim=1) * weight.to(z.device)).sum()

        noise_seed = (cfg.seed * 1_000_003 + step * cfg.accumulate + m) * 1000
        loss, final = backward(traj, denoiser, loss_fn, lambda i: masks.resample(noise_seed + i))
        if not torch.isfinite(loss):
            return float("nan")
        with torch.no_grad():  # the normalized MSE, for the log and the divergence check
            return float(((final.float() - ref).pow(2).flatten(1).mean(dim=1) / var).sum()) / per_step

    return sample_loss


@contextmanager
def _frozen(denoiser):
    """The denoiser's own weights require no grad inside (only the masks train); restored after."""
    requires = {id(p): p.requires_grad for p in denoiser.parameters()}
    for p in denoiser.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in denoiser.parameters():
            p.requires_grad_(requires[id(p)])


def ecodiff_scores(
    pipe,
    groups: list[UnitGroup],
    prompts,
    sampling: dict,
    config: EcoDiffConfig | None = None,
    checkpoint_dir: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train mask logits on the calibration ``prompts``; return them as unit scores (higher = keep) and a log.

    ``prompts`` holds prompt strings and/or (prompt, seed) pairs (see :func:`~pruning.trajectory.calibration_pairs`);
    ``sampling`` holds steps, guidance, height, width and max_sequence_length for the trajectory.
    """
    cfg = config or EcoDiffConfig(controller="none")
    pairs = trajectory.calibration_pairs(prompts, cfg.seed)
    denoiser = denoiser_of(pipe)
    per_step = cfg.batch * cfg.accumulate  # several processes split each step's micro-batches (MaskTrainer)
    total = cfg.steps or max(1, math.ceil(cfg.epochs * len(pairs) / per_step))
    schedule = _schedule(len(pairs), per_step, total, cfg.seed)

    masks = MaskSet(groups, cfg.parametrization, noise_bound=cfg.noise_bound)
    masks.to(next(denoiser.parameters()).device)
    trainer = MaskTrainer(masks, cfg, total, checkpoint_dir, _fingerprint(cfg, sampling, pairs, groups))
    with _frozen(denoiser), masks.attach(denoiser):
        t0 = time.perf_counter()
        calib = _Calibration(pipe, denoiser, masks, pairs, sampling, cfg.batch)
        prepare_s = time.perf_counter() - t0
        info = trainer.run(_sample_loss(calib, schedule, denoiser, masks, cfg))
    info.update(
        calibration_pairs=len(pairs),
        samples_per_step=per_step,
        prepare_s=prepare_s,
        checkpointing=cfg.checkpointing,
        processes=distributed.rank_world()[1],
        normalize_mse=cfg.normalize_mse,
    )
    return masks.named_logits(), info


def annotate_plan(plan, logits: dict[str, torch.Tensor], info: dict) -> None:
    """The registry's plan annotator: the :func:`plan_summary` under ``plan.info["ecodiff"]``, and a
    warning when the masks were trained for another ratio than the plan cuts at."""
    plan.info["ecodiff"] = summary = plan_summary(plan, logits, info)
    trained = summary["trained_target"]
    if trained is not None and abs(trained - plan.ratio) > 1e-9:
        warnings.warn(
            f"EcoDiff masks trained to remove {trained:.0%} are cut at {plan.ratio:.0%}: the cut will not "
            f"follow the closed gates (agreement {summary['agreement']:.2f}); train with "
            f"target_sparsity={plan.ratio}",
            stacklevel=4,  # the caller of pruning.plan (through Method.annotate_plan and pruning.plan)
        )


def plan_summary(plan, logits: dict[str, torch.Tensor], info: dict) -> dict:
    """What a plan built from EcoDiff logits records: the training's target, final expected sparsity,
    steps and time, and ``agreement``: the share of the plan's removed unit parameters that sit on closed
    gates (gates more likely closed than open, as training left them)."""
    below = OPEN_SHIFT if info.get("parametrization", "hard-concrete") == "hard-concrete" else 0.0
    cut = on_closed = 0
    for name, m in plan.modules.items():
        closed = logits[name].float() < below  # P(open) < 0.5, for bounded and unbounded noise alike
        removed = sorted(set(range(m.total)) - set(m.kept))
        cut += len(removed) * m.params_per_unit
        on_closed += int(closed[removed].sum()) * m.params_per_unit
    return {
        "target": plan.ratio,
        "trained_target": info.get("target"),
        "controller": info.get("controller"),
        "expected_sparsity": info.get("expected_sparsity"),
        "closed_share": info.get("closed_share"),
        "agreement": on_closed / cut if cut else None,
        "steps": info.get("steps"),
        "train_time_s": info.get("train_time_s"),
    }
