"""Tests of the digits model zoo: data split, tokenizers, cards, stock loading, digits-clip, training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ecodiff_bench import zoo
from ecodiff_bench.zoo import data

GENERATORS = list(zoo.GENERATORS)
OFFLINE_ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
}
# sha256 of the comma-joined held-out indices of the fixed split (seed 0): guards against silent changes
HELDOUT_SHA256 = "03c06296422010ed0409047bf64c5751b47a23d216683896226f072c115262d7"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # shared CPU: one thread is faster than two oversubscribed ones
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------------
# data


def test_split_disjoint_stratified_and_stable():
    tr, he = data.split_indices()
    assert set(tr.tolist()).isdisjoint(he.tolist())
    assert len(tr) + len(he) == 1797
    _, labels = data.digits_arrays("all")
    for c in range(10):
        n_c = int((labels == c).sum())
        n_held = int((labels[he] == c).sum())
        assert abs(n_held - data.HELDOUT_FRACTION * n_c) <= 1
    assert hashlib.sha256(",".join(map(str, he.tolist())).encode()).hexdigest() == HELDOUT_SHA256
    tr2, he2 = data.split_indices.__wrapped__(data.SPLIT_SEED)  # recomputed, not cached
    assert (tr2 == tr).all() and (he2 == he).all()


def test_images_range_shape_and_labels():
    x, y = data.digits_arrays("heldout")
    assert x.shape == (len(data.split_indices()[1]), 3, 16, 16)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert (x[:, 0] == x[:, 1]).all()
    assert set(y.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="split must be one of"):
        data.digits_arrays("test")


def test_prompts_and_captions():
    assert len(data.PROMPTS) == 10
    assert data.prompt_for(0) == "a handwritten digit zero"
    assert data.prompt_for(9) == "a handwritten digit nine"
    for d in range(10):
        caps = data.captions_for(d)
        assert caps[0] == data.prompt_for(d) and len(caps) >= 4
        assert all(data.digit_from_prompt(c) == d for c in caps)
    with pytest.raises(ValueError):
        data.prompt_for(10)


# ----------------------------------------------------------------------------------------------------
# API, cards


def test_import_is_light():
    code = "import sys, ecodiff_bench.zoo as z; z.ZOO_NAMES; z.list_models(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=OFFLINE_ENV, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_zoo_path_errors(tmp_path):
    with pytest.raises(zoo.ZooModelMissing) as e:
        zoo.zoo_path("digits-sdxl", root=tmp_path)
    msg = str(e.value)
    assert "model_index.json" in msg and str(tmp_path) in msg and "ecodiff-bench zoo train digits-sdxl" in msg
    with pytest.raises(KeyError, match="Did you mean: digits-sdxl"):
        zoo.zoo_path("digits-sdxll")
    listed = zoo.list_models(root=tmp_path)
    assert [m["name"] for m in listed] == list(zoo.ZOO_NAMES)
    assert not any(m["available"] for m in listed)


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_card_fields(name):
    c = zoo.card(name)
    assert c["name"] == name and c["family"] == zoo.FAMILIES[name]
    assert c["seed"] == 0 and c["training_time_s"] > 0
    assert c["params"]["total"] > 0
    assert c["teacher"] == zoo.TEACHERS.get(name)
    if name == "digits-clip":
        assert c["heldout_zero_shot_accuracy"]["value"] >= 0.9
        assert c["heldout_zero_shot_accuracy"]["n_samples"] == len(data.split_indices()[1])
        return
    parts = {
        k: v
        for k, v in c["params"].items()
        if k not in ("total", "unet_transformer_blocks", "transformer_blocks")
    }
    assert sum(parts.values()) == c["params"]["total"]
    kw = c["call_kwargs"]
    for key in ("num_inference_steps", "guidance_scale", "height", "width"):
        assert key in kw
    assert kw["height"] == kw["width"] == 16
    if c["family"].startswith("flux"):
        assert kw["max_sequence_length"] <= 32
    if c["family"] in ("sdxl-turbo", "flux-schnell"):
        assert 1 <= kw["num_inference_steps"] <= 4 and kw["guidance_scale"] == 0.0
    rec = c["recognisability"]
    assert rec["n_samples"] >= 200 and rec["value"] >= 0.9


def test_list_models_and_total_size():
    models = zoo.list_models()
    assert all(m["available"] for m in models), [m.get("error") for m in models]
    total = sum(m["weights_bytes"] for m in models)
    assert total < 25e6, f"zoo weights take {total / 1e6:.1f} MB"


# ----------------------------------------------------------------------------------------------------
# tokenizers


@pytest.mark.parametrize("name", GENERATORS)
def test_tokenizers_give_ids_for_prompts(name):
    from transformers import AutoTokenizer

    path = zoo.zoo_path(name)
    index = json.loads((path / "model_index.json").read_text())
    for sub in ("tokenizer", "tokenizer_2"):
        tok = AutoTokenizer.from_pretrained(str(path / sub), local_files_only=True)
        assert type(tok).__name__ in (index[sub][1], index[sub][1].replace("Fast", ""))
        for prompt in data.PROMPTS:
            ids = tok(prompt).input_ids
            assert tok.unk_token_id not in ids[1:-1] or tok.unk_token_id == tok.eos_token_id
            words = prompt.split()
            # every prompt word is a single token (plus bos/eos for CLIP, eos for T5)
            assert len(ids) == len(words) + (2 if "CLIP" in type(tok).__name__ else 1), (prompt, ids)


def test_digits_clip_tokenizer_matches_generators():
    _, _, tokenizer = zoo.load_digits_clip()
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(zoo.zoo_path("digits-sdxl") / "tokenizer"), local_files_only=True)
    ids = tokenizer(list(data.PROMPTS))
    assert ids.shape == (10, 16)
    for row, p in zip(ids.tolist(), data.PROMPTS, strict=True):
        ref = hf(p).input_ids
        assert row[: len(ref)] == ref


# ----------------------------------------------------------------------------------------------------
# stock loading in a fresh, offline process


STOCK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, diffusers
    torch.set_num_threads(1)
    path = sys.argv[1]
    card = json.load(open(path + "/zoo_card.json"))
    cls_name = json.load(open(path + "/model_index.json"))["_class_name"]
    cls = getattr(diffusers, cls_name)
    pipe = cls.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(card["call_kwargs"])
    kw["num_inference_steps"] = min(2, kw["num_inference_steps"])
    img = pipe(prompt="a handwritten digit three", generator=torch.Generator().manual_seed(0), **kw).images[0]
    print(json.dumps({"class": type(pipe).__name__, "size": list(img.size), "mode": img.mode,
                      "imported_ecodiff": any(m.startswith("ecodiff_bench") for m in sys.modules)}))
    """
)


@pytest.mark.parametrize("name", GENERATORS)
def test_stock_diffusers_loads_and_generates(name, tmp_path):
    path = zoo.zoo_path(name)
    env = {**OFFLINE_ENV, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", STOCK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {"sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline"}[zoo.FAMILIES[name].split("-")[0]]
    assert res == {"class": expected, "size": [16, 16], "mode": "RGB", "imported_ecodiff": False}


def test_sdxl_sampler_matches_pipeline():
    """The stateless Euler sampler used for distillation reproduces the stock pipeline's latents."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from ecodiff_bench.zoo import sdxl

    pipe = StableDiffusionXLPipeline.from_pretrained(str(zoo.zoo_path("digits-sdxl")), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    prompts = [data.prompt_for(3), data.prompt_for(8)]
    out = pipe(
        prompt=prompts,
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
        num_inference_steps=3,
        guidance_scale=5.0,
    ).images
    z = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        e, p = sdxl.encode_text(pipe.text_encoder, pipe.text_encoder_2, ids)
    sig, ts, init = sdxl.schedule(dict(pipe.scheduler.config), 3)
    mine = sdxl.euler_sample(
        pipe.unet, z, e, p, sig, ts, init, 5.0, (torch.zeros_like(e), torch.zeros_like(p))
    )
    torch.testing.assert_close(mine, out, atol=1e-4, rtol=1e-4)


def test_flux_sampler_matches_pipeline():
    import torch
    from diffusers import FluxPipeline

    from ecodiff_bench.zoo import flux

    pipe = FluxPipeline.from_pretrained(str(zoo.zoo_path("digits-flux")), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    prompts = [data.prompt_for(2), data.prompt_for(5)]
    out = pipe(
        prompt=prompts,
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
        num_inference_steps=3,
        guidance_scale=3.5,
        height=16,
        width=16,
        max_sequence_length=16,
    ).images
    z = flux.pack(torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(1)))
    ci = pipe.tokenizer(prompts, padding="max_length", max_length=16, return_tensors="pt").input_ids
    ti = pipe.tokenizer_2(prompts, padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        e, p = flux.encode_text(pipe.text_encoder, pipe.text_encoder_2, ci, ti)
    mine = flux.flow_sample(pipe.transformer, z, e, p, flux.schedule(dict(pipe.scheduler.config), 3), 3.5)
    torch.testing.assert_close(mine, out, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------
# digits-clip


def test_digits_clip_heldout_accuracy_and_preprocess():
    import torch
    from PIL import Image

    from ecodiff_bench.zoo.classify import DigitsClassifier, heldout_real_accuracy

    clf = DigitsClassifier()
    acc = heldout_real_accuracy(clf)
    assert acc["value"] >= 0.9 and acc["n_samples"] == len(data.split_indices()[1])
    # PIL images of any size go through open_clip's preprocess to the model input
    x, y = data.digits_tensors("heldout")
    pils = [im.resize((64, 64), Image.BILINEAR) for im in data.to_pil(x[:40])]
    assert clf.preprocess(pils[0]).shape == (3, 16, 16)
    pred = clf.predict_pil(pils)
    assert float((pred == y[:40]).float().mean()) >= 0.85
    # [0, 1] and [-1, 1] inputs give the same features
    f1 = zoo.encode_images(clf.model, x[:8], value_range=(-1.0, 1.0))
    f2 = zoo.encode_images(clf.model, (x[:8] + 1) / 2)
    torch.testing.assert_close(f1, f2, atol=1e-5, rtol=1e-5)
    assert f1.shape == (8, clf.text_features.shape[1])


def test_digits_clip_registered_with_open_clip():
    import open_clip

    zoo.load_digits_clip()
    assert "digits-clip" in open_clip.list_models()
    model = open_clip.create_model(
        "digits-clip", pretrained=str(zoo.zoo_path("digits-clip") / "open_clip_model.safetensors")
    )
    assert sum(p.numel() for p in model.parameters()) == zoo.card("digits-clip")["params"]["total"]


# ----------------------------------------------------------------------------------------------------
# training (tiny iteration counts; the full recipes are what `ecodiff-bench zoo train` runs)


def test_train_clip_smoke(tmp_path):
    out = zoo.train("digits-clip", tmp_path / "digits-clip", iters=2, batch=16, progress=False)
    c = json.loads((out / "zoo_card.json").read_text())
    assert c["recipe"]["iters"] == 2 and (out / "open_clip_model.safetensors").is_file()
    model, preprocess, tok = zoo.load_digits_clip(model_dir=out)
    assert tok(["a handwritten digit one"]).shape == (1, 16)


@pytest.mark.parametrize("name", ["digits-sdxl-turbo", "digits-flux-schnell"])
def test_train_student_smoke(name, tmp_path):
    out = zoo.train(
        name, tmp_path / name, iters=2, n_pairs=8, teacher_steps=2, batch=4, evaluate=False, progress=False
    )
    c = json.loads((out / "zoo_card.json").read_text())
    assert c["teacher"] == zoo.TEACHERS[name] and c["recipe"]["iters"] == 2
    assert c["family"] == zoo.FAMILIES[name] and c["call_kwargs"]["guidance_scale"] == 0.0
    assert (out / "model_index.json").is_file()


def test_train_rejects_unknown_settings(tmp_path):
    with pytest.raises(TypeError, match="Unknown recipe setting"):
        zoo.train("digits-clip", tmp_path / "x", iterz=3)


@pytest.mark.parametrize("name", ["digits-sdxl", "digits-flux"])
def test_train_teacher_smoke(name, tmp_path):
    out = zoo.train(
        name,
        tmp_path / name,
        iters=2,
        vae_iters=2,
        batch=8,
        evaluate=False,
        progress=False,
        **({"distill_iters": 2} if name == "digits-flux" else {}),
    )
    c = json.loads((out / "zoo_card.json").read_text())
    assert c["recipe"]["iters"] == 2 and c["recognisability"] is None and c["training_time_s"] > 0
    assert (out / "model_index.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATORS)
def test_recognisability_reproduces_card(name):
    from diffusers import DiffusionPipeline

    from ecodiff_bench.zoo.classify import recognisability

    c = zoo.card(name)
    pipe = DiffusionPipeline.from_pretrained(c["path"], local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    rec = recognisability(pipe, c["call_kwargs"], per_digit=20, seed=0)
    assert rec["value"] >= 0.9
    assert abs(rec["value"] - c["recognisability"]["value"]) <= 0.02


@pytest.mark.parametrize("name", GENERATORS)
def test_every_attention_module_has_at_least_eight_heads(name):
    """Head pruning on the zoo is as fine-grained as on SDXL (10-20 heads) and FLUX (24): one head is <= 1/8."""
    from diffusers import DiffusionPipeline

    import pruning

    pipe = DiffusionPipeline.from_pretrained(zoo.zoo_path(name), local_files_only=True)
    heads = [g for g in pruning.find_groups(pruning.denoiser_of(pipe)) if g.kind == "heads"]
    assert heads and min(g.n_units for g in heads) >= 8
    if name.startswith("digits-flux"):
        cfg = pipe.transformer.config
        assert sum(cfg.axes_dims_rope) == cfg.attention_head_dim
