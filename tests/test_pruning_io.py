"""Saved pruned models: stock diffusers loading, save_pretrained round trips, integrity, the model card."""

import json
import os
from pathlib import Path

import pytest
import torch
from tiny import SDXL_CALL, flux_pipeline, fresh_python, sdxl_pipeline

import pruning
from pruning.pretrained import decode_units, encode_units

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a handwritten digit four"


def _with_empty_modules(pipe, plan):
    """The plan, plus one attention and one feed-forward with every unit removed (constants after surgery)."""
    heads = next(n for n in plan.modules if n.endswith(":heads"))
    ffn = next(n for n in plan.modules if n.endswith(":ffn"))
    plan.modules[heads].kept, plan.modules[ffn].kept = [], []
    return plan


def _image(pipe, call):
    return pipe(PROMPT, generator=torch.Generator().manual_seed(1), output_type="pt", **call).images


def test_kept_units_round_trip_as_ranges():
    assert encode_units([0, 1, 2, 3, 5, 7, 8, 9]) == "0-3,5,7-9"
    assert encode_units([]) == ""
    for kept in ([], [4], [0, 2, 4], list(range(100)), [1, 2, 3, 10, 11, 99]):
        assert decode_units(encode_units(kept), group="g") == kept
    with pytest.raises(ValueError, match=r"pruned_units\['g'\] = '1-x'"):
        decode_units("1-x", group="g")


@pytest.mark.parametrize("zoo_name", ["digits-sdxl", "digits-flux"])
def test_stock_diffusers_loads_a_pruned_zoo_model_and_save_pretrained_round_trips(zoo_name, tmp_path):
    from diffusers import DiffusionPipeline

    from ecodiff_bench.zoo import card, zoo_path

    call = card(zoo_name)["call_kwargs"]
    pipe = DiffusionPipeline.from_pretrained(zoo_path(zoo_name))
    pipe.set_progress_bar_config(disable=True)
    plan = _with_empty_modules(pipe, pruning.prune(pipe, "magnitude", 0.3))
    pruning.apply(pipe, plan)
    torch.save(_image(pipe, call), tmp_path / "expected.pt")
    pruning.save(pipe, plan, tmp_path / "pruned", copy_components=True)
    index = json.loads((tmp_path / "pruned" / "model_index.json").read_text())
    attr, denoiser_class, stock_class = (
        ("unet", "PrunedUNet2DConditionModel", "StableDiffusionXLPipeline")
        if zoo_name == "digits-sdxl"
        else ("transformer", "PrunedFluxTransformer2DModel", "FluxPipeline")
    )
    assert index[attr] == ["pruning", denoiser_class]
    out = fresh_python(
        f"""
        import torch
        import pruning  # diffusers resolves ["pruning", ...] among imported modules
        from diffusers import DiffusionPipeline, {stock_class}

        def image(pipe):
            pipe.set_progress_bar_config(disable=True)
            return pipe({PROMPT!r}, generator=torch.Generator().manual_seed(1), output_type="pt", **{call!r}).images

        stock = DiffusionPipeline.from_pretrained("pruned")
        assert type(stock).__name__ == {stock_class!r}, type(stock)
        a = image(stock)
        b = image(pruning.load("pruned"))
        c = image({stock_class}.from_pretrained("pruned"))
        stock.save_pretrained("resaved")
        d = image(DiffusionPipeline.from_pretrained("resaved"))
        e = image(pruning.load("resaved"))
        ref = torch.load("expected.pt", weights_only=True)
        print("loaders_equal", all(torch.equal(a, x) for x in (b, c, d, e)))
        print("maxdiff_vs_in_memory", (a - ref).abs().max().item())
    """,
        tmp_path,
    )
    print(out)  # the figures, for `pytest -s`
    assert "loaders_equal True" in out, out
    assert float(out.split("maxdiff_vs_in_memory ")[1]) < 1e-5, out
    assert not list((tmp_path / "resaved").rglob("*.bin")) and not list((tmp_path / "pruned").rglob("*.pkl"))


def test_apply_twice_records_the_composed_cut(tmp_path):
    pipe = sdxl_pipeline()
    first = pruning.prune(pipe, "magnitude", 0.2)
    pruning.apply(pipe, first)
    second = pruning.prune(pipe, "random", 0.3)
    pruning.apply(pipe, second)
    expected = _image(pipe, SDXL_CALL)
    for name, mp in second.modules.items():
        before = first.modules[name].kept
        assert pipe.unet.pruned_units.get(name, before) == [before[i] for i in mp.kept]
    out = pruning.save(pipe, second, tmp_path / "twice", copy_components=True)
    again = pruning.load(out)
    again.set_progress_bar_config(disable=True)
    assert torch.allclose(_image(again, SDXL_CALL), expected, atol=1e-5)


def test_surgery_without_apply_is_recorded_by_save_and_a_stale_config_is_refused(tmp_path):
    pipe = flux_pipeline()
    plan = pruning.prune(pipe, "magnitude", 0.3)
    pruning.apply_plan(pipe.transformer, plan)  # low level: shapes cut, config not told
    out = pruning.save(pipe, plan, tmp_path / "low", copy_components=True)
    assert type(pruning.load(out).transformer).__name__ == "PrunedFluxTransformer2DModel"

    pruning.apply_plan(pipe.transformer, pruning.prune(pipe, "random", 0.3))  # behind the config's back
    with pytest.raises(ValueError, match="config does not rebuild its shapes"):
        pruning.save(pipe, plan, tmp_path / "stale", copy_components=True)


def test_save_by_reference_needs_a_hub_id_or_base_at_load(tmp_path):
    pipe = sdxl_pipeline()
    pipe.save_pretrained(tmp_path / "base")
    plan = pruning.prune(pipe, "magnitude", 0.3)
    pruning.apply(pipe, plan)
    expected = _image(pipe, SDXL_CALL)
    out = pruning.save(pipe, plan, tmp_path / "ref", base=str(tmp_path / "base"))
    meta = json.loads((out / "pruned.json").read_text())
    assert meta["base"] is None and meta["base_name"] == "base" and not (out / "model_index.json").exists()
    with pytest.raises(ValueError, match="pass base="):
        pruning.load(out)
    loaded = pruning.load(out, base=str(tmp_path / "base"))
    loaded.set_progress_bar_config(disable=True)
    assert torch.allclose(_image(loaded, SDXL_CALL), expected, atol=1e-5)
    card = (out / "README.md").read_text()
    assert 'pruning.load("ref", base="<the unpruned model' in card

    from diffusers import StableDiffusionXLPipeline  # the card's diffusers-only way

    unet = pruning.PrunedUNet2DConditionModel.from_pretrained(out, subfolder="unet")
    stock = StableDiffusionXLPipeline.from_pretrained(tmp_path / "base", unet=unet)
    stock.set_progress_bar_config(disable=True)
    assert torch.equal(_image(stock, SDXL_CALL), _image(loaded, SDXL_CALL))


def _saved_flux(tmp_path: Path) -> Path:
    pipe = flux_pipeline()
    plan = pruning.prune(pipe, "magnitude", 0.3)
    return pruning.save(pruning.apply(pipe, plan), plan, tmp_path / "m", copy_components=True)


def test_tampered_missing_or_unrecorded_weight_files_are_refused(tmp_path):
    from diffusers import DiffusionPipeline

    out = _saved_flux(tmp_path)
    weights = out / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x01  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    loaders = [
        (pruning.load, out),
        (DiffusionPipeline.from_pretrained, out),
        (pruning.PrunedFluxTransformer2DModel.from_pretrained, out / "transformer"),
    ]
    for loader, target in loaders:
        with pytest.raises(pruning.IntegrityError, match=rf"{weights}: sha256 mismatch"):
            loader(target)

    out = _saved_flux(tmp_path / "2")
    vae = out / "vae" / "diffusion_pytorch_model.safetensors"
    vae.write_bytes(vae.read_bytes()[:-1])  # a truncated copy: only pruned.json covers the other components
    with pytest.raises(pruning.IntegrityError, match=rf"{vae}: sha256 mismatch"):
        pruning.load(out)
    vae.unlink()
    with pytest.raises(pruning.IntegrityError, match=rf"{vae}: weight file is missing"):
        pruning.load(out)

    out = _saved_flux(tmp_path / "3")
    stray = out / "transformer" / "diffusion_pytorch_model.fp16.safetensors"
    stray.write_bytes(b"not recorded")
    with pytest.raises(pruning.IntegrityError, match=rf"{stray}: weight file not recorded"):
        pruning.load(out)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("denoiser", "../../outside/transformer"),
        ("denoiser", "/etc"),
        ("sha256", {"../outside.safetensors": "0" * 64}),
    ],
)
def test_metadata_paths_must_stay_inside_the_model_directory(tmp_path, field, value):
    out = _saved_flux(tmp_path)
    meta = json.loads((out / "pruned.json").read_text())
    meta[field] = value
    (out / "pruned.json").write_text(json.dumps(meta))
    shown = value if isinstance(value, str) else next(iter(value))
    with pytest.raises(
        pruning.IntegrityError, match=rf"pruned.json: .*{field}.* = '{shown}' is not a path inside"
    ):
        pruning.load(out)


def test_saved_files_hold_no_machine_paths(tmp_path):
    from diffusers import DiffusionPipeline

    from ecodiff_bench.zoo import zoo_path

    pipe = DiffusionPipeline.from_pretrained(zoo_path("digits-flux-schnell"))  # loaded from a local directory
    plan = pruning.prune(pipe, "magnitude", 0.2)
    out = pruning.save(pruning.apply(pipe, plan), plan, tmp_path / "m", copy_components=True)
    machine = [str(zoo_path("digits-flux-schnell").parent), str(tmp_path), str(ROOT), os.path.expanduser("~")]
    for file in out.rglob("*"):
        if file.suffix in (".json", ".md", ".txt"):
            text = file.read_text()
            assert not [m for m in machine if m in text], file
            assert "_name_or_path" not in text, file


def test_model_card_front_matter_and_measured_figures(tmp_path):
    from huggingface_hub import ModelCard

    pipe = flux_pipeline()
    plan = pruning.prune(pipe, "magnitude", 0.25)
    pruning.apply(pipe, plan)
    out = pruning.save(pipe, plan, tmp_path / "flux-mag25", base="black-forest-labs/FLUX.1-dev")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "black-forest-labs/FLUX.1-dev"
    assert card.data.library_name == "diffusers"
    assert {"pruned", "magnitude", "flux"} <= set(card.data.tags)
    assert card.data.pruning["method"] == "magnitude" and card.data.pruning["ratio"] == 0.25
    assert "Not measured yet" in card.text and 'pruning.load("flux-mag25")' in card.text

    rows = [
        {
            "name": "latency_image_s",
            "value": 0.5,
            "unit": "s",
            "status": "measured",
            "base": 0.8,
            "ratio": 0.61,
        },
        {
            "name": "energy_image_j",
            "value": 2.0,
            "unit": "J",
            "status": "estimated",
            "base": 4.0,
            "note": "CPU load model",
        },
        {"name": "fid", "value": None, "unit": "", "status": "unavailable", "note": "no Inception weights"},
    ]
    pruning.write_card(out, measured=rows, details={"suite": "digits", "device": "cpu"})
    text = (out / "README.md").read_text()
    assert "| latency_image_s | 0.5 s | 0.8 s | 0.610 | measured |" in text
    assert "| energy_image_j | 2 J | 4 J | 0.500 | estimated: CPU load model |" in text
    assert "| fid | unavailable | n/a | n/a | unavailable: no Inception weights |" in text
    assert "- suite: digits" in text
    pruning.write_card(out, measured=rows, details={"reference": f"{tmp_path}/real-digits"})
    text = (out / "README.md").read_text()
    assert "- reference: ../real-digits" in text and str(tmp_path) not in text


def test_save_pretrained_refuses_pickles(tmp_path):
    pipe = sdxl_pipeline()
    pruning.apply(pipe, pruning.prune(pipe, "magnitude", 0.2))
    with pytest.raises(ValueError, match="safetensors only"):
        pipe.unet.save_pretrained(tmp_path / "u", safe_serialization=False)
