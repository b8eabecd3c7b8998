"""CLIP score with a tiny open_clip model (random weights, built from a config): 100 x cosine by hand,
clamping, loading from a local directory, and the error when no local weights exist."""

from __future__ import annotations

import json

import pytest
import torch

from ecodiff_bench.quality.clip_score import ClipScore, find_clip_checkpoint

MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
PROMPTS = ["a photo of a cat", "a handwritten digit seven", "a red car", "two dogs"]


@pytest.fixture(scope="module")
def tiny_clip():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(**MODEL_CFG).eval()
    preprocess = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    return model, preprocess, tokenizer


def images(n=4, seed=0):
    return torch.rand(n, 3, 40, 48, generator=torch.Generator().manual_seed(seed))


def hand_scores(model, preprocess, tokenizer, imgs, prompts):
    from torchvision.transforms.functional import to_pil_image

    u8 = (imgs * 255).round().clamp(0, 255).to(torch.uint8)
    pix = torch.stack([preprocess(to_pil_image(im)) for im in u8])
    with torch.no_grad():
        a = model.encode_image(pix)
        b = model.encode_text(tokenizer(prompts))
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    return 100.0 * (a * b).sum(-1)


def test_clip_score_is_100_times_cosine(tiny_clip):
    model, preprocess, tokenizer = tiny_clip
    imgs = images()
    expected = hand_scores(model, preprocess, tokenizer, imgs, PROMPTS)
    metric = ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer, clamp_at_zero=False)
    metric.update(imgs[:2], PROMPTS[:2])
    metric.update(imgs[2:], PROMPTS[2:])
    assert float(metric.compute()) == pytest.approx(float(expected.mean()), abs=1e-4)
    v = metric.compute_value()
    assert v.name == "clip_score" and v.higher_is_better is True and v.details["n"] == 4


def test_clamping_at_zero(tiny_clip):
    model, preprocess, tokenizer = tiny_clip
    imgs = images(8, seed=1)
    prompts = PROMPTS * 2
    raw = hand_scores(model, preprocess, tokenizer, imgs, prompts)
    assert (raw < 0).any() and (raw > 0).any()  # random weights: both signs occur, so clamping matters
    clamped = ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer)
    clamped.update(imgs, prompts)
    assert float(clamped.compute()) == pytest.approx(float(raw.clamp(min=0).mean()), abs=1e-4)
    per_image = clamped.scores(imgs, prompts)
    assert (per_image >= 0).all()
    assert torch.allclose(per_image, raw.clamp(min=0), atol=1e-4)


def test_uint8_and_float_images_agree(tiny_clip):
    model, preprocess, tokenizer = tiny_clip
    m = ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer)
    x = images()
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(m.scores(x, PROMPTS), m.scores(u8, PROMPTS))


def test_load_from_local_dir(tiny_clip, tmp_path):
    from safetensors.torch import save_file

    model, preprocess, tokenizer = tiny_clip
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": MODEL_CFG}))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(tmp_path / "open_clip_model.safetensors"),
    )
    loaded = ClipScore(f"local-dir:{tmp_path}")
    ref = ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer)
    x = images()
    assert torch.allclose(loaded.scores(x, PROMPTS), ref.scores(x, PROMPTS), atol=1e-5)


def test_errors(tiny_clip, tmp_path, monkeypatch):
    model, preprocess, tokenizer = tiny_clip
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("ECODIFF_CLIP_CHECKPOINT", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        find_clip_checkpoint()
    msg = str(err.value)
    assert "open_clip_model.safetensors" in msg and "timm/vit_base_patch32_clip_224.openai" in msg
    assert str(tmp_path / "hf") in msg
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "open_clip_config.json").write_text(json.dumps({"model_cfg": MODEL_CFG}))
    with pytest.raises(FileNotFoundError, match="random weights are never used"):
        ClipScore(f"local-dir:{tmp_path / 'noweights'}")
    with pytest.raises(ValueError, match="would download"):
        ClipScore("hf-hub:laion/whatever")
    with pytest.raises(ValueError, match="tokenizer: required"):
        ClipScore(model=model, preprocess=preprocess)
    m = ClipScore(model=model, preprocess=preprocess, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="prompts: expected one per image"):
        m.update(images(2), PROMPTS)
    with pytest.raises(RuntimeError, match="no images were scored"):
        m.compute()
