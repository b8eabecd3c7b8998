"""The optimisation loop of learned masks, independent of what produces the loss.

:class:`MaskTrainer` runs AdamW on a :class:`MaskSet`'s logits for a fixed number of optimizer steps. Each
step asks a callback for ``accumulate`` loss contributions (each backpropagated into the logits by the
callback), adds the sparsity term (a :class:`LagrangianController` driving the expected removed share to
a target, or the fixed penalty ``beta_reg x expected kept share``), checks for divergence, steps, and
checkpoints logits, optimizer, controller and position, so that an interrupted run resumes to the same
logits. EcoDiff's trajectory objective is one such callback; the unit tests use a toy one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..checkpoints import TrainingCheckpoint
from ..masks import MaskSet
from ..targets import HEADS
from .sparsity import PENALTIES, LagrangianController, closed_share, expected_removed


class TrainingDiverged(RuntimeError):
    """Mask training produced a non-finite or exploding loss; the last good checkpoint is kept."""


# (step, micro-batch) -> that micro-batch's share of the normalized MSE, its gradient already in the logits
SampleLoss = Callable[[int, int], float]


class MaskTrainer:
    """AdamW on the logits of ``masks`` for ``steps`` optimizer steps with the sparsity term of ``cfg``.

    ``cfg`` is an :class:`~pruning.methods.ecodiff.EcoDiffConfig` (or anything with its fields).
    Several processes (torch.distributed) split each step's micro-batches (micro-batch ``m`` on rank
    ``m % world``) and sum their gradients before the sparsity term, which every rank adds alike: the
    logits follow the single-process run, on every rank. Rank 0 alone writes the checkpoint.
    """

    def __init__(
        self,
        masks: MaskSet,
        cfg,
        steps: int,
        checkpoint_dir=None,
        fingerprint: dict | None = None,
    ):
        self.masks, self.cfg, self.steps = masks, cfg, steps
        heads = [masks.logit(n) for n, g in masks.groups.items() if g.kind == HEADS]
        ffn = [masks.logit(n) for n, g in masks.groups.items() if g.kind != HEADS]
        param_groups = [{"params": heads, "lr": cfg.lr_heads or cfg.lr}, {"params": ffn, "lr": cfg.lr}]
        self.optimizer = torch.optim.AdamW(
            [g for g in param_groups if g["params"]], weight_decay=cfg.weight_decay
        )
        self.controller = (
            LagrangianController(cfg.target_sparsity, round(cfg.warmup * steps), cfg.dual_lr)
            if cfg.controller == "lagrangian"
            else None
        )
        self.ckpt = TrainingCheckpoint(
            checkpoint_dir, fingerprint or {}, weights="logits.safetensors", what="mask-training"
        )
        resumed = self.ckpt.load(self._logits(), self.optimizer)
        self.start = resumed.get("position", 0)
        self.curve: list[dict] = resumed.get("curve", [])
        self.elapsed = resumed.get("elapsed_s", 0.0)
        if self.controller is not None and resumed.get("controller"):
            self.controller.lambda1 = resumed["controller"]["lambda1"]
            self.controller.lambda2 = resumed["controller"]["lambda2"]

    def _logits(self) -> dict[str, torch.Tensor]:
        """The trained tensors by group name (the live logits: a checkpoint loads into them)."""
        return {name: self.masks.logit(name) for name in self.masks.groups}

    def run(self, sample_loss: SampleLoss) -> dict:
        """Train from where a checkpoint left off; returns the training log (see :meth:`summary`)."""
        cfg, masks, ctl = self.cfg, self.masks, self.controller
        rank, world = distributed.rank_world()
        t0 = time.perf_counter()
        bar = tqdm(
            total=self.steps,
            initial=self.start,
            desc="ecodiff masks",
            disable=not cfg.progress or rank != 0,
            leave=False,
        )
        for step in range(self.start, self.steps):
            with distributed.together("mask training"):
                mine = sum(sample_loss(step, m) for m in range(cfg.accumulate) if m % world == rank)
            nmse = distributed.sum_floats([mine])[0]
            distributed.sum_grads_(masks.parameters())
            s = expected_removed(masks, cfg.penalty)
            (ctl.penalty(s, step) if ctl else cfg.beta_reg * (1.0 - s)).backward()
            if not math.isfinite(nmse) or nmse > cfg.max_normalized_mse or not all_finite(masks.parameters()):
                where = (
                    f"last good checkpoint kept in {self.ckpt.dir}"
                    if self.ckpt.dir
                    else "no checkpoint directory set"
                )
                raise TrainingDiverged(
                    f"mask training diverged at optimizer step {step}: normalized MSE {nmse:.4g} "
                    f"(limit {cfg.max_normalized_mse}); {where}. Try a lower learning rate."
                )
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            # the shape reports/artifact_plots reads: nmse (normalized by the references' variance when
            # normalize_mse), expected_sparsity (the expected removed share), and the controller's state
            row = {"step": step, "nmse": nmse, "expected_sparsity": s.item()}
            if ctl:
                row.update(target=ctl.target_at(step), lambda1=ctl.lambda1, lambda2=ctl.lambda2)
                ctl.update(s.item(), step)
            self.curve.append(row)
            bar.update(1)
            bar.set_postfix(nmse=f"{nmse:.3g}", s=f"{s.item():.3f}")
            if rank == 0:  # one writer
                self.ckpt.save(
                    self._logits(),
                    self.optimizer,
                    {
                        "position": step + 1,
                        "curve": self.curve,
                        "elapsed_s": self.elapsed + time.perf_counter() - t0,
                        "controller": ctl.state() if ctl else None,
                    },
                )
        bar.close()
        self.elapsed += time.perf_counter() - t0
        return self.summary()

    def summary(self) -> dict:
        """Target, final expected sparsity (every weighting), closed share, multipliers, curve, time."""
        cfg, ctl = self.cfg, self.controller
        with torch.no_grad():
            by_penalty = {p: float(expected_removed(self.masks, p)) for p in PENALTIES}
        return {
            "controller": cfg.controller,
            "target": cfg.target_sparsity,
            "penalty": cfg.penalty,
            "expected_sparsity": by_penalty["params"],
            "expected_sparsity_by_penalty": by_penalty,
            "closed_share": closed_share(self.masks),
            "steps": self.steps,
            "resumed_from": self.start,
            "train_time_s": self.elapsed,
            "parametrization": self.masks.parametrization,
            "noise_bound": self.masks.noise_bound,
            "lambda1": ctl.lambda1 if ctl else None,
            "lambda2": ctl.lambda2 if ctl else None,
            "curve": self.curve,
        }


def all_finite(tensors) -> bool:
    """Whether every tensor is finite, with one device sync for all of them (not one per tensor)."""
    tensors = list(tensors)
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
