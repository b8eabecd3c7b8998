"""Resumable training state in a directory: trained tensors, AdamW state and progress (safetensors + JSON,
never pickles). Mask training and recovery keep theirs this way, so an interrupted run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class TrainingCheckpoint:
    """``<weights>.safetensors`` (the trained tensors by name), ``optimizer.safetensors`` and ``state.json``
    (the fingerprint of the setup, the optimizer's param groups, the caller's progress). A checkpoint of
    another setup (a different fingerprint) is refused rather than resumed."""

    def __init__(self, directory: str | Path | None, fingerprint: dict, *, weights: str, what: str):
        self.dir = Path(directory) if directory else None
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON
        self.files = (weights, "optimizer.safetensors", "state.json")
        self.what = what

    def load(self, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> dict:
        """Copy the saved tensors into ``tensors`` and the optimizer state into ``optimizer``; returns the
        saved progress, or {} when there is no checkpoint."""
        if self.dir is None or not (self.dir / "state.json").exists():
            return {}
        state = json.loads((self.dir / "state.json").read_text())
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"{self.dir} holds a checkpoint of a different {self.what} setup; "
                "delete it or choose another checkpoint directory"
            )
        saved = load_file(self.dir / self.files[0])
        with torch.no_grad():
            for name, t in tensors.items():
                t.copy_(saved[name])
        opt_state = {"state": {}, "param_groups": state["param_groups"]}
        for key, tensor in load_file(self.dir / "optimizer.safetensors").items():
            idx, slot = key.split(".", 1)
            opt_state["state"].setdefault(int(idx), {})[slot] = tensor
        optimizer.load_state_dict(opt_state)
        return state

    def save(
        self, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, progress: dict
    ) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        opt = optimizer.state_dict()
        slots = {
            f"{idx}.{slot}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
            for idx, per_param in opt["state"].items()
            for slot, v in per_param.items()
        }
        # Temporary names first, renamed at the end: a kill mid-save never leaves a torn checkpoint.
        tmp = {name: self.dir / f".{name}.tmp" for name in self.files}
        save_file({n: t.detach().cpu().contiguous() for n, t in tensors.items()}, tmp[self.files[0]])
        save_file(slots, tmp["optimizer.safetensors"])
        state = {"fingerprint": self.fingerprint, "param_groups": opt["param_groups"], **progress}
        tmp["state.json"].write_text(json.dumps(state))
        for name, path in tmp.items():
            path.replace(self.dir / name)
