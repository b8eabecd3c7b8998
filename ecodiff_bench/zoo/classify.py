"""Zero-shot classification with digits-clip, and the recognisability of a generator.

recognisability = fraction of generated samples that digits-clip assigns to the prompted digit, with
the ten canonical prompts (``data.PROMPTS``) as the classes. Samples come from the model's own pipeline
at its recorded call settings with fixed per-sample seeds, so the number is reproducible.
"""

from __future__ import annotations

from typing import Any

import torch

from . import data


class DigitsClassifier:
    """digits-clip zero-shot classifier over the ten canonical prompts."""

    def __init__(self, device: str = "cpu", model_dir=None, class_texts: list[str] | None = None):
        from .clip import encode_texts, load_digits_clip

        self.model, self.preprocess, self.tokenizer = load_digits_clip(device, model_dir)
        self.class_texts = list(class_texts or data.PROMPTS)
        self.text_features = encode_texts(self.model, self.tokenizer, self.class_texts)

    def logits(self, images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        from .clip import encode_images

        feats = encode_images(self.model, images, value_range=value_range)
        return 100.0 * feats @ self.text_features.T

    def predict(self, images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Predicted class index per image (N, 3, H, W) with values in value_range."""
        return self.logits(images, value_range).argmax(dim=1).cpu()

    def predict_pil(self, images) -> torch.Tensor:
        x = torch.stack([self.preprocess(im) for im in images])  # already normalized to [-1, 1]
        return self.predict(x, value_range=(-1.0, 1.0))


def heldout_real_accuracy(classifier: DigitsClassifier | None = None) -> dict[str, Any]:
    """digits-clip zero-shot accuracy on the held-out REAL digits."""
    clf = classifier or DigitsClassifier()
    x, y = data.digits_tensors("heldout")
    pred = clf.predict(x, value_range=(-1.0, 1.0))
    return {"value": float((pred == y).float().mean()), "n_samples": int(len(y))}


def sample_seeds(seed: int, per_digit: int) -> list[list[int]]:
    """Fixed per-sample seeds: seeds[d][i] for digit d, sample i."""
    return [[seed * 1_000_003 + d * 1_000 + i for i in range(per_digit)] for d in range(data.NUM_CLASSES)]


@torch.no_grad()
def generate_digits(
    pipe, call_kwargs: dict[str, Any], per_digit: int = 20, seed: int = 0, batch_digits: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate per_digit images for each digit with the pipeline; returns ([N,3,H,W] in [0,1], labels)."""
    seeds = sample_seeds(seed, per_digit)
    images, labels = [], []
    for start in range(0, data.NUM_CLASSES, batch_digits):
        digits = list(range(start, min(data.NUM_CLASSES, start + batch_digits)))
        prompts = [data.prompt_for(d) for d in digits for _ in range(per_digit)]
        gens = [torch.Generator("cpu").manual_seed(s) for d in digits for s in seeds[d]]
        out = pipe(prompt=prompts, generator=gens, output_type="pt", **call_kwargs).images
        images.append(out.float().cpu())
        labels += [d for d in digits for _ in range(per_digit)]
    return torch.cat(images), torch.tensor(labels)


def recognisability(
    pipe,
    call_kwargs: dict[str, Any],
    per_digit: int = 20,
    seed: int = 0,
    classifier: DigitsClassifier | None = None,
) -> dict[str, Any]:
    """Fraction of generated samples classified as the prompted digit (plus per-digit values)."""
    clf = classifier or DigitsClassifier()
    images, labels = generate_digits(pipe, call_kwargs, per_digit=per_digit, seed=seed)
    pred = clf.predict(images, value_range=(0.0, 1.0))
    ok = pred == labels
    per = [float(ok[labels == d].float().mean()) for d in range(data.NUM_CLASSES)]
    return {
        "value": round(float(ok.float().mean()), 4),
        "n_samples": int(len(labels)),
        "per_digit": [round(v, 3) for v in per],
        "classifier": "digits-clip",
        "seed": seed,
        "call_kwargs": dict(call_kwargs),
    }
