"""digits-clip: a small open_clip model trained contrastively on the digits training split.

Shipped as an open_clip "local-dir" folder: ``open_clip_config.json`` (model and preprocessing
config), ``open_clip_model.safetensors`` and a CLIP BPE tokenizer (the zoo's compact vocabulary, read
through open_clip's HFTokenizer). ``load_digits_clip`` also registers the architecture with open_clip
under the name ``digits-clip`` (so ``open_clip.create_model("digits-clip", pretrained=<file>)`` works in
the same process).

Images: the vision tower takes 16x16 RGB normalized with mean = std = 0.5, i.e. values in [-1, 1]; the
open_clip preprocess maps PIL images of any size to that (bilinear resize of the shorter side to 16,
centre crop). Training contrasts each image against one caption per class (a random caption variant),
i.e. a 10-way softmax over text features, with light augmentation (shifts, small affine warps, blur,
noise, contrast) so that imperfect generated digits are still read correctly.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data
from .common import (
    CARD_FILE,
    TIME_NOTE,
    apply_overrides,
    count_params,
    lr_at,
    optimizer_step,
    pick_captions,
    progress_iter,
    replace_dir,
    set_lr,
    setup_torch,
    weight_bytes,
    write_clip_tokenizer_files,
    write_json,
)
from .tokenization import CLIP_MAX_LENGTH, build_clip_tokenizer, clip_special_ids

OPEN_CLIP_NAME = "digits-clip"
CHECKPOINT = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


@dataclasses.dataclass
class ClipRecipe:
    iters: int = 450
    batch: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    embed_dim: int = 64
    vision_width: int = 64
    vision_layers: int = 4
    patch_size: int = 2
    text_width: int = 64
    text_layers: int = 3


def model_config(r: ClipRecipe) -> dict:
    ids = clip_special_ids()
    return {
        "embed_dim": r.embed_dim,
        "vision_cfg": {
            "image_size": data.IMAGE_SIZE,
            "layers": r.vision_layers,
            "width": r.vision_width,
            "head_width": 16,
            "mlp_ratio": 2.0,
            "patch_size": r.patch_size,
        },
        "text_cfg": {
            "context_length": CLIP_MAX_LENGTH,
            "vocab_size": ids["vocab_size"],
            "width": r.text_width,
            "heads": r.text_width // 16,
            "layers": r.text_layers,
            "mlp_ratio": 2.0,
            # any non-empty name selects open_clip's HFTokenizer; with "local-dir:" open_clip reads the
            # tokenizer from the model folder itself
            "hf_tokenizer_name": OPEN_CLIP_NAME,
        },
    }


PREPROCESS_CFG = {
    "size": data.IMAGE_SIZE,
    "mode": "RGB",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bilinear",
    "resize_mode": "shortest",
}


# ----------------------------------------------------------------------------------------------------
# Loading


@lru_cache(maxsize=8)
def register_with_open_clip(model_dir: str) -> str:
    """Register the architecture as ``digits-clip`` with open_clip (tokenizer path made absolute)."""
    import open_clip

    cfg = json.loads((Path(model_dir) / CONFIG_FILE).read_text())["model_cfg"]
    cfg["text_cfg"]["hf_tokenizer_name"] = str(Path(model_dir).resolve())
    # open_clip reads the file when it is added and keeps the config in memory: the file can go.
    with tempfile.TemporaryDirectory(prefix="ecodiff_digits_clip_") as tmp:
        (Path(tmp) / f"{OPEN_CLIP_NAME}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(Path(tmp) / f"{OPEN_CLIP_NAME}.json")
    return OPEN_CLIP_NAME


def load_digits_clip(device: str | torch.device = "cpu", model_dir: str | Path | None = None):
    """Load digits-clip: returns (model, preprocess, tokenizer) like open_clip.

    model.encode_image / model.encode_text as in open_clip; preprocess maps PIL images (any size) to
    normalized 16x16 tensors; tokenizer maps a list of strings to token ids (context length 16).
    """
    import open_clip

    from . import zoo_path

    path = Path(model_dir) if model_dir is not None else zoo_path(OPEN_CLIP_NAME)
    for name in (CONFIG_FILE, CHECKPOINT):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"digits-clip file {name!r} not found in {path}. "
                f"Run `ecodiff-bench zoo train {OPEN_CLIP_NAME}` to create it."
            )
    register_with_open_clip(str(path.resolve()))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}", device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
    return model, preprocess, tokenizer


def encode_images(
    model,
    images: torch.Tensor,
    value_range: tuple[float, float] = (0.0, 1.0),
    normalize: bool = True,
    batch: int = 512,
) -> torch.Tensor:
    """Image features for a batch of RGB tensors (N, 3, H, W) with values in ``value_range``.

    Pipelines return [0, 1] with ``output_type="pt"``; the zoo's data is in [-1, 1]. Images of another
    size are resized (bilinear, antialiased) to 16x16.
    """
    lo, hi = value_range
    device = next(model.parameters()).device
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i : i + batch].to(device=device, dtype=torch.float32)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = (x - lo) / (hi - lo) * 2.0 - 1.0  # mean = std = 0.5 normalization
            if x.shape[-2:] != (data.IMAGE_SIZE, data.IMAGE_SIZE):
                x = F.interpolate(
                    x,
                    size=(data.IMAGE_SIZE, data.IMAGE_SIZE),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
            f = model.encode_image(x)
            feats.append(F.normalize(f, dim=-1) if normalize else f)
    return torch.cat(feats)


def encode_texts(model, tokenizer, texts: list[str], normalize: bool = True) -> torch.Tensor:
    device = next(model.parameters()).device
    with torch.no_grad():
        f = model.encode_text(tokenizer(list(texts)).to(device))
    return F.normalize(f, dim=-1) if normalize else f


# ----------------------------------------------------------------------------------------------------
# Training


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light augmentation of [-1, 1] digit images: affine warp, blur, contrast, noise."""
    n = x.shape[0]
    ang = (torch.rand(n, generator=gen) - 0.5) * 2 * 0.2  # +-11 degrees
    scale = 1.0 + (torch.rand(n, generator=gen) - 0.5) * 0.25
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 2 * 0.2  # +-1.6 px of 16
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    # blur a third of the images
    k = torch.tensor([0.25, 0.5, 0.25])
    k2 = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    pick = (torch.rand(n, 1, 1, 1, generator=gen) < 0.33).float()
    x = pick * blurred + (1 - pick) * x
    # contrast / brightness, noise
    c = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    b = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2
    x = (x + 1.0) * c - 1.0 + b
    x = x + torch.randn(x.shape, generator=gen) * 0.1 * torch.rand(n, 1, 1, 1, generator=gen)
    return x.clamp(-1.0, 1.0)


def _build_model(r: ClipRecipe):
    from open_clip.model import CLIP

    cfg = model_config(r)
    model = CLIP(
        embed_dim=cfg["embed_dim"], vision_cfg=dict(cfg["vision_cfg"]), text_cfg=dict(cfg["text_cfg"])
    )
    return model, cfg


@torch.no_grad()
def heldout_accuracy(model, tokenizer) -> tuple[float, int]:
    x, y = data.digits_tensors("heldout")
    txt = encode_texts(model, tokenizer, list(data.PROMPTS))
    img = encode_images(model, x, value_range=(-1.0, 1.0))
    pred = (img @ txt.T).argmax(1)
    return float((pred == y).float().mean()), len(y)


def train_clip(out_dir: Path, *, seed: int = 0, progress: bool = True, **overrides) -> Path:
    r = apply_overrides(ClipRecipe(), overrides)
    gen = setup_torch(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    x_train, y_train = data.digits_tensors("train")
    captions = data.all_captions()
    tok = build_clip_tokenizer()  # saved below as it stands after this call (tokenizer.json keeps padding)
    cap_ids = torch.tensor(
        tok(
            [c for c, _ in captions], padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True
        ).input_ids
    )
    model, cfg = _build_model(r)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    model.train()
    for step in progress_iter(r.iters, "digits-clip", progress):
        set_lr(opt, lr_at(step, r.iters, r.lr, warmup=min(30, r.iters)))
        idx = torch.randint(0, len(x_train), (r.batch,), generator=gen)
        x = augment(x_train[idx], gen)
        y = y_train[idx]
        # one caption per class: canonical prompt half of the time, else a random variant
        ids = cap_ids[pick_captions(torch.arange(data.NUM_CLASSES), 0.5, gen)]
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(ids), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        loss = F.cross_entropy(logits, y)
        optimizer_step(opt, loss)
    model.eval()
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".digits-clip-", dir=Path(out_dir).parent))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / CHECKPOINT))
    write_json(tmp / CONFIG_FILE, {"model_cfg": cfg, "preprocess_cfg": PREPROCESS_CFG})
    tok.save_pretrained(str(tmp))
    write_clip_tokenizer_files(tmp)
    final = replace_dir(tmp, Path(out_dir))

    m, _, t = load_digits_clip("cpu", model_dir=final)
    acc, n = heldout_accuracy(m, t)
    card = {
        "name": OPEN_CLIP_NAME,
        "family": "clip",
        "description": "open_clip ViT (16x16 input, patch 2) + text transformer, contrastive on digits (train split)",
        "params": {
            "visual": count_params(m.visual),
            "text": count_params(m) - count_params(m.visual),
            "total": count_params(m),
        },
        "training_time_s": round(train_s, 2),
        "training_cpu_time_s": round(train_cpu_s, 2),
        "training_threads": torch.get_num_threads(),
        "training_time_note": TIME_NOTE,
        "heldout_zero_shot_accuracy": {"value": round(acc, 4), "n_samples": n, "classes": list(data.PROMPTS)},
        "recognisability": None,
        "call_kwargs": {},
        "teacher": None,
        "seed": seed,
        "recipe": dataclasses.asdict(r),
        "open_clip": {
            "load": "open_clip.create_model_and_transforms('local-dir:<this folder>')",
            "registered_name": OPEN_CLIP_NAME,
            "context_length": CLIP_MAX_LENGTH,
            "image_value_range": [-1.0, 1.0],
        },
        "weights_bytes": weight_bytes(final),
    }
    write_json(final / CARD_FILE, card)
    return final
