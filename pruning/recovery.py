"""Recovery after pruning: a short distillation of the pruned denoiser toward the unpruned one.

The teacher is the unpruned denoiser, the data its own sampling trajectories from the calibration prompts
(no external images): each (prompt, seed) sample is unrolled once with the teacher, keeping the latent
entering every step and the teacher's prediction there (the sampler's derivative, guidance included).
Objectives:

- ``timesteps`` (default): at random (sample, step) points of those trajectories, the pruned model's
  prediction is pulled toward the teacher's; each point's squared error is divided by the mean square of
  the teacher's prediction, so a loss of 1 is as far off as predicting zero.
- ``final-latent``: EcoDiff's objective: the pruned model's own final latent from the same initial noise,
  against the teacher's, backpropagated through every step by time-step checkpointing.
- ``both``: their sum (the final-latent term weighted by ``final_weight``).

What trains: ``lora`` adapters (peft, the library diffusers uses) on the linears of the transformer blocks,
merged into the weights at the end, so a recovered model is a plain pruned model with the same shapes; or
``full``: every remaining weight of the denoiser.

Resumable: the trainable weights, AdamW's state and the position are checkpointed (safetensors + JSON,
written atomically) every ``checkpoint_every`` optimizer steps and at the end; a rerun with the same
setup continues from there (a finished one only reloads). A non-finite or exploding loss, or weights that
turn non-finite, stop training with :class:`RecoveryDiverged`, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import trajectory
from .api import SAMPLING_KEYS
from .architectures import denoiser_of, prepare_trajectories
from .checkpoints import TrainingCheckpoint
from .config import LORA_MODULES, RecoveryConfig
from .methods.mask_training import TrainingDiverged, all_finite


class RecoveryDiverged(TrainingDiverged):
    """Recovery produced a non-finite or exploding loss; the last good checkpoint is kept."""


@dataclass
class _Sample:
    """One calibration sample's teacher trajectory: the latent entering each step and the teacher's prediction."""

    traj: trajectory.Trajectory
    latents: list[torch.Tensor]  # steps + 1, on the CPU
    targets: list[torch.Tensor]  # steps, on the CPU


def teacher_trajectories(pipe, teacher: nn.Module, samples, sampling: dict, batch: int = 16) -> list[_Sample]:
    """Unroll ``teacher`` on every (prompt, seed) with ``pipe``'s encoders, recording latents and predictions.

    Samples run ``batch`` at a time as one stacked trajectory (each row follows its own trajectory exactly);
    every prompt is encoded once however many seeds it has.
    """
    trajs = prepare_trajectories(pipe, samples, sampling)
    out = []
    for start in range(0, len(trajs), batch):
        chunk = trajs[start : start + batch]
        joint = trajectory.stack(chunk)
        targets = []

        def recording(den, x, i, model=joint.model, targets=targets):
            d = model(den, x, i)
            targets.append(d.detach().cpu())
            return d

        with torch.no_grad():
            latents = trajectory.run(dataclasses.replace(joint, model=recording), teacher, keep=True)
        latents = [x.detach().cpu() for x in latents]
        for k, traj in enumerate(chunk):
            out.append(_Sample(traj, [x[k : k + 1] for x in latents], [d[k : k + 1] for d in targets]))
    return out


def _relative_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error divided by the target's mean square."""
    err = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return err / target.float().pow(2).flatten(1).mean(1).clamp_min(1e-12)


def _predict(samples: list[_Sample], student: nn.Module, x: torch.Tensor, i: int) -> torch.Tensor:
    """The student's step-``i`` predictions at ``x`` (one row per sample), in one batched call."""
    return trajectory.stack_models([s.traj for s in samples])(student, x, i)


def distillation_error(pipe, teacher: nn.Module, prompts, sampling: dict, seed: int = 0) -> float:
    """Mean relative error of ``pipe``'s denoiser against ``teacher`` over every step of the teacher's
    trajectories from ``prompts`` (strings or (prompt, seed) pairs): the timesteps objective, without sampling.
    """
    student = denoiser_of(pipe)
    device = next(student.parameters()).device
    errors = []
    with torch.no_grad():
        for s in teacher_trajectories(
            pipe, teacher, trajectory.calibration_pairs(prompts, seed, "recovery"), sampling
        ):
            for i, target in enumerate(s.targets):
                pred = s.traj.model(student, s.latents[i].to(device), i)
                errors.append(_relative_error(pred, target.to(device)))
    return torch.cat(errors).mean().item()


def _timestep_loss(
    data: list[_Sample], student: nn.Module, cfg: RecoveryConfig, step: int, weight: float
) -> float:
    """Backpropagate the timesteps objective at ``cfg.batch`` seeded (sample, step) points; returns its value."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    ks = torch.randint(len(data), (cfg.batch,), generator=g).tolist()
    steps = torch.randint(len(data[0].targets), (cfg.batch,), generator=g).tolist()
    by_step = defaultdict(list)
    for k, i in zip(ks, steps, strict=True):
        by_step[i].append(k)
    device = next(student.parameters()).device
    total = 0.0
    for i, group in sorted(by_step.items()):
        chosen = [data[k] for k in group]
        x = torch.cat([s.latents[i] for s in chosen]).to(device)
        target = torch.cat([s.targets[i] for s in chosen]).to(device)
        with torch.enable_grad():
            loss = _relative_error(_predict(chosen, student, x, i), target).sum() * (weight / cfg.batch)
            loss.backward()
        total += loss.item()
    return total


def _final_latent_loss(
    data: list[_Sample], student: nn.Module, cfg: RecoveryConfig, step: int, weight: float
) -> float:
    """Backpropagate EcoDiff's final-latent objective on ``cfg.final_samples`` seeded samples."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + 7)
    backward = trajectory.checkpointed_backward if cfg.checkpointing else trajectory.full_backward
    total = 0.0
    for k in torch.randint(len(data), (cfg.final_samples,), generator=g).tolist():
        ref = data[k].latents[-1].to(data[k].traj.latents.device)

        def loss_fn(z, ref=ref):
            return _relative_error(z, ref).sum() * (weight / cfg.final_samples)

        loss, _ = backward(data[k].traj, student, loss_fn)
        total += loss.item()
    return total


# --- what trains ------------------------------------------------------------------------------------------------


def lora_targets(denoiser: nn.Module, modules: str = "blocks") -> list[str]:
    """Names of the linears of ``denoiser`` that LoRA adapts for ``modules`` (see :data:`pruning.config.LORA_MODULES`)."""
    pattern = re.compile(LORA_MODULES[modules])
    return [n for n, m in denoiser.named_modules() if isinstance(m, nn.Linear) and pattern.search(n)]


def _add_lora(denoiser: nn.Module, cfg: RecoveryConfig) -> None:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:  # a declared dependency; say how to get it rather than fail obscurely
        raise ImportError("recovery mode 'lora' needs peft: pip install peft (or use mode 'full')") from err
    names = lora_targets(denoiser, cfg.modules)
    if not names:
        raise ValueError(
            f"no linear layer of {type(denoiser).__name__} matches recovery modules {cfg.modules!r}"
        )
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha or cfg.rank, target_modules=names)
    with torch.random.fork_rng(devices=[]):  # LoRA's A matrices are drawn from the global generator
        torch.manual_seed(cfg.seed)
        inject_adapter_in_model(config, denoiser)


def merge_lora(denoiser: nn.Module) -> int:
    """Fold every LoRA adapter into its base linear and put the plain linear back; returns how many."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [(n, m) for n, m in denoiser.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in layers:
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(denoiser.get_submodule(parent) if parent else denoiser, child, layer.get_base_layer())
    return len(layers)


def _trainable(denoiser: nn.Module, cfg: RecoveryConfig) -> dict[str, nn.Parameter]:
    """Attach adapters (lora) and return the parameters to train, by name; everything else frozen."""
    if cfg.mode == "lora":
        _add_lora(denoiser, cfg)
    for name, p in denoiser.named_parameters():
        p.requires_grad_(cfg.mode == "full" or "lora_" in name)
    return {n: p for n, p in denoiser.named_parameters() if p.requires_grad}


# --- checkpoints ------------------------------------------------------------------------------------------------


def _digest(denoiser: nn.Module) -> str:
    """A cheap fingerprint of the student's starting weights (names, shapes, sums)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in denoiser.state_dict().items():
            q = p.detach().double()
            h.update(f"{name}{tuple(p.shape)}{q.sum().item():.10e}{q.abs().sum().item():.10e}".encode())
    return h.hexdigest()


# --- the loop ---------------------------------------------------------------------------------------------------


def _checked_sampling(prompts, sampling: dict) -> dict:
    """The call settings ``sampling`` restricted to :data:`pruning.api.SAMPLING_KEYS`; refuses missing ones."""
    if not prompts:
        raise ValueError("recovery needs at least one calibration prompt")
    if "steps" not in sampling or "guidance" not in sampling:
        raise ValueError("recovery needs sampling={'steps': ..., 'guidance': ...}")
    return {k: sampling[k] for k in SAMPLING_KEYS if k in sampling}


def _fingerprint(cfg: RecoveryConfig, sampling: dict, samples, student: nn.Module) -> dict:
    """What a checkpoint must match to be resumed: the settings, the samples and the student's weights."""
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "checkpoint_every")},
        "sampling": sampling,
        "samples": samples,
        "student": _digest(student),
    }


def recover(
    pipe,
    teacher: nn.Module,
    prompts,
    sampling: dict,
    config: RecoveryConfig | None = None,
    checkpoint_dir: str | Path | None = None,
) -> dict:
    """Distil ``pipe``'s (pruned) denoiser toward ``teacher`` (the unpruned one), in place; returns a log.

    ``prompts`` are the calibration prompts, or (prompt, seed) pairs; ``sampling`` holds steps, guidance
    and optionally height, width, max_sequence_length. The pipeline's text encoders condition both models.
    LoRA adapters are merged before returning, so the denoiser keeps its pruned shapes and plain linears.
    """
    cfg = config or RecoveryConfig()
    sampling = _checked_sampling(prompts, sampling)
    student = denoiser_of(pipe)
    if student is teacher:
        raise ValueError("the teacher must be the unpruned denoiser, not the pipeline's own (pruned) one")
    samples = trajectory.calibration_pairs(prompts, cfg.seed, "recovery")
    fingerprint = _fingerprint(cfg, sampling, samples, student)
    requires = {n: p.requires_grad for n, p in student.named_parameters()}
    params = _trainable(student, cfg)
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = TrainingCheckpoint(checkpoint_dir, fingerprint, weights="trainable.safetensors", what="recovery")
    resumed = ckpt.load(params, optimizer)
    start, curve, elapsed = (
        resumed.get("position", 0),
        resumed.get("curve", []),
        resumed.get("elapsed_s", 0.0),
    )
    t0 = time.perf_counter()
    was_training = student.training
    try:
        if start < cfg.steps:
            student.train()
            data = teacher_trajectories(pipe, teacher, samples, sampling)
            _train(data, student, params, optimizer, ckpt, cfg, start, curve, elapsed, t0)
    finally:
        student.train(was_training)
        if cfg.mode == "lora":
            merge_lora(student)
        for n, p in student.named_parameters():
            p.requires_grad_(requires.get(n, False))
    return {
        "mode": cfg.mode,
        "objective": cfg.objective,
        "steps": cfg.steps,
        "trainable_params": sum(p.numel() for p in params.values()),
        "samples": len(samples),
        "resumed_from": start,
        "recovery_time_s": elapsed + time.perf_counter() - t0 if start < cfg.steps else elapsed,
        "loss_first": curve[0]["loss"] if curve else None,
        "loss_last": curve[-1]["loss"] if curve else None,
        "curve": curve,
    }


def _train(
    data,
    student,
    params,
    optimizer,
    ckpt: TrainingCheckpoint,
    cfg: RecoveryConfig,
    start: int,
    curve: list,
    elapsed: float,
    t0: float,
) -> None:
    final_weight = {"timesteps": 0.0, "final-latent": 1.0, "both": cfg.final_weight}[cfg.objective]
    bar = tqdm(total=cfg.steps, initial=start, desc="recovery", disable=not cfg.progress, leave=False)
    for step in range(start, cfg.steps):
        row = {"step": step}
        if cfg.objective != "final-latent":
            row["timesteps"] = _timestep_loss(data, student, cfg, step, 1.0)
        if final_weight:
            row["final_latent"] = _final_latent_loss(data, student, cfg, step, final_weight)
        row["loss"] = loss = row.get("timesteps", 0.0) + row.get("final_latent", 0.0)
        if not math.isfinite(loss) or loss > cfg.max_loss:
            _diverged(ckpt, step, f"normalized loss {loss:.4g} (limit {cfg.max_loss})")
        if cfg.grad_clip:
            row["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not all_finite(params.values()):
            _diverged(ckpt, step, "weights became non-finite after the optimizer step")
        curve.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3g}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            ckpt.save(
                params,
                optimizer,
                {"position": step + 1, "curve": curve, "elapsed_s": elapsed + time.perf_counter() - t0},
            )
    bar.close()


def _diverged(ckpt: TrainingCheckpoint, step: int, what: str):
    where = f"last good checkpoint kept in {ckpt.dir}" if ckpt.dir else "no checkpoint directory set"
    raise RecoveryDiverged(
        f"recovery diverged at optimizer step {step}: {what}; {where}. Try a lower learning rate."
    )
