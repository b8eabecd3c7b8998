"""EcoDiff: learn one mask logit per unit with an objective over the whole denoising trajectory.

Loss per calibration prompt: MSE between the masked model's final latent and the unmasked model's final
latent from the same prompt and initial noise (the reference is computed once per prompt), plus
``beta_reg`` times the sparsity penalty of the masks. Gradients come from time-step checkpointing by
default (exact, memory flat in the step count) or from plain backpropagation through every step.

Training checkpoints its logits, optimizer state and position after every optimizer step, so an
interrupted run resumes where it stopped; a non-finite or diverging loss stops it with a clear message,
leaving the last good checkpoint in place.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import trajectory
from ..masks import MaskSet
from ..targets import HEADS, UnitGroup


class TrainingDiverged(RuntimeError):
    """Mask training produced a non-finite or exploding loss; the last good checkpoint is kept."""


@dataclass
class EcoDiffConfig:
    epochs: int = 4
    lr: float = 0.1
    lr_heads: float | None = None  # defaults to lr (the official FLUX setting uses 0.5 for heads)
    beta_reg: float = 0.5
    accumulate: int = 4  # calibration samples per optimizer step (batch 1 each)
    parametrization: str = "hard-concrete"
    checkpointing: bool = True
    seed: int = 0
    max_normalized_mse: float = 10.0  # MSE / Var(reference) above this counts as divergence
    progress: bool = True
    extra: dict = field(default_factory=dict)


def _sampling_key(sampling: dict) -> dict:
    return {k: sampling.get(k) for k in ("steps", "guidance", "height", "width", "max_sequence_length")}


class _Checkpoint:
    """Logits + AdamW state + progress in a directory; safetensors and JSON only."""

    def __init__(self, directory: Path | None, fingerprint: dict):
        self.dir = Path(directory) if directory else None
        self.fingerprint = fingerprint

    def load(self, masks: MaskSet, optimizer: torch.optim.Optimizer) -> dict | None:
        if self.dir is None or not (self.dir / "state.json").exists():
            return None
        state = json.loads((self.dir / "state.json").read_text())
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"{self.dir} holds a checkpoint of a different mask-training setup; "
                "delete it or choose another checkpoint directory"
            )
        logits = load_file(self.dir / "logits.safetensors")
        with torch.no_grad():
            for name in masks.groups:
                masks.logit(name).copy_(logits[name])
        opt_tensors = load_file(self.dir / "optimizer.safetensors")
        opt_state = {"state": {}, "param_groups": state["param_groups"]}
        for key, tensor in opt_tensors.items():
            idx, slot = key.split(".", 1)
            opt_state["state"].setdefault(int(idx), {})[slot] = tensor
        optimizer.load_state_dict(opt_state)
        return state

    def save(self, masks: MaskSet, optimizer: torch.optim.Optimizer, progress: dict) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        opt = optimizer.state_dict()
        tensors = {
            f"{idx}.{slot}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
            for idx, slots in opt["state"].items()
            for slot, v in slots.items()
        }
        # Write to temporary names first so a kill mid-save never leaves a torn checkpoint.
        tmp = {n: self.dir / f".{n}.tmp" for n in ("logits.safetensors", "optimizer.safetensors", "state.json")}
        save_file({k: v.contiguous() for k, v in masks.named_logits().items()}, tmp["logits.safetensors"])
        save_file(tensors, tmp["optimizer.safetensors"])
        state = {"fingerprint": self.fingerprint, "param_groups": opt["param_groups"], **progress}
        tmp["state.json"].write_text(json.dumps(state))
        for name, path in tmp.items():
            path.replace(self.dir / name)


def ecodiff_scores(
    pipe,
    groups: list[UnitGroup],
    prompts: list[str],
    sampling: dict,
    config: EcoDiffConfig | None = None,
    checkpoint_dir: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train mask logits on ``prompts``; return them as unit scores (higher = keep) and a training log.

    ``sampling`` holds steps, guidance, height, width and max_sequence_length for the trajectory.
    """
    cfg = config or EcoDiffConfig()
    if not prompts:
        raise ValueError("ecodiff needs at least one calibration prompt")
    denoiser = trajectory.denoiser_of(pipe)
    device = next(denoiser.parameters()).device
    shard = _Shard.current()
    my_prompts = list(enumerate(prompts))[shard.index :: shard.count]

    masks = MaskSet(groups, cfg.parametrization).to(device)
    head_logits = [masks.logit(g.name) for g in groups if g.kind == HEADS]
    ffn_logits = [masks.logit(g.name) for g in groups if g.kind != HEADS]
    param_groups = [{"params": head_logits, "lr": cfg.lr_heads or cfg.lr}, {"params": ffn_logits, "lr": cfg.lr}]
    optimizer = torch.optim.AdamW([g for g in param_groups if g["params"]], weight_decay=0.0)
    fingerprint = {"config": {k: v for k, v in asdict(cfg).items() if k != "progress"},
                   "sampling": _sampling_key(sampling), "prompts": prompts, "groups": [g.name for g in groups]}
    ckpt = _Checkpoint(checkpoint_dir, fingerprint)
    resumed = ckpt.load(masks, optimizer)
    start = resumed["position"] if resumed else 0
    curve = resumed["curve"] if resumed else []
    elapsed = resumed["elapsed_s"] if resumed else 0.0

    def trajectory_for(k: int, prompt: str):
        return trajectory.prepare(pipe, prompt, cfg.seed + k, steps=sampling["steps"],
                                  guidance=sampling["guidance"], height=sampling.get("height"),
                                  width=sampling.get("width"),
                                  max_sequence_length=sampling.get("max_sequence_length", 512))

    requires = {id(p): p.requires_grad for p in denoiser.parameters()}
    for p in denoiser.parameters():
        p.requires_grad_(False)
    masks.attach(denoiser)
    backward = trajectory.checkpointed_backward if cfg.checkpointing else trajectory.full_backward
    total = cfg.epochs * len(my_prompts)
    t0 = time.perf_counter()
    try:
        # Prompt encoding, initial noise and schedule are fixed per prompt: prepare them once.
        trajectories = {k: trajectory_for(k, p) for k, p in my_prompts}
        with masks.using("off"), torch.no_grad():
            refs = {k: trajectory.run(traj, denoiser) for k, traj in trajectories.items()}
        bar = tqdm(total=total, initial=start, desc="ecodiff masks", disable=not cfg.progress, leave=False)
        for position in range(start, total):
            epoch, j = divmod(position, len(my_prompts))
            order = torch.randperm(len(my_prompts), generator=torch.Generator().manual_seed(cfg.seed + epoch))
            k, _ = my_prompts[int(order[j])]
            ref = refs[k]
            scale = 1.0 / cfg.accumulate
            noise_seed = (cfg.seed * 1_000_003 + position) * 1000

            def loss_fn(z, ref=ref, scale=scale):
                return torch.nn.functional.mse_loss(z.float(), ref.float()) * scale

            loss, _ = backward(trajectories[k], denoiser, loss_fn,
                               lambda i, s=noise_seed: masks.resample(s + i))
            sparsity = masks.sparsity_loss()
            (cfg.beta_reg * sparsity * scale).backward()
            mse = loss.item() / scale
            nmse = mse / max(ref.float().var().item(), 1e-12)
            if not math.isfinite(mse) or nmse > cfg.max_normalized_mse or not _finite(masks):
                raise TrainingDiverged(
                    f"mask training diverged at sample {position} (epoch {epoch}): MSE {mse:.4g}, "
                    f"normalized {nmse:.4g} (limit {cfg.max_normalized_mse}); "
                    + (f"last good checkpoint kept in {ckpt.dir}" if ckpt.dir else "no checkpoint directory set")
                    + ". Try a lower learning rate."
                )
            curve.append({"step": position, "epoch": epoch, "loss": mse + cfg.beta_reg * sparsity.item(),
                          "mse": mse, "sparsity": sparsity.item()})
            bar.update(1)
            bar.set_postfix(mse=f"{mse:.3g}", open=f"{sparsity.item():.3f}")
            if (position + 1) % cfg.accumulate == 0 or position + 1 == total:
                shard.all_reduce_grads(masks.parameters())
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                ckpt.save(masks, optimizer, {"position": position + 1, "curve": curve,
                                             "elapsed_s": elapsed + time.perf_counter() - t0})
        bar.close()
    finally:
        masks.detach()
        for p in denoiser.parameters():
            p.requires_grad_(requires[id(p)])
    scores = masks.named_logits()
    info = {"curve": curve, "train_time_s": elapsed + time.perf_counter() - t0, "samples": total,
            "resumed_from": start, "checkpointing": cfg.checkpointing, "processes": shard.count}
    return scores, info


def _finite(masks: MaskSet) -> bool:
    return all(torch.isfinite(p).all() for p in masks.parameters())


@dataclass
class _Shard:
    """This process's share of the calibration prompts when launched with accelerate / torchrun."""

    index: int = 0
    count: int = 1

    @classmethod
    def current(cls) -> _Shard:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def all_reduce_grads(self, params) -> None:
        if self.count == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.count
