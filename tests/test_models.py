"""Model families, offline loading, random-init architectures and seeded generation (CPU, offline)."""

from __future__ import annotations

import socket

import pytest
import torch

from ecodiff_bench import models
from ecodiff_bench.core.registry import UnknownNameError
from ecodiff_bench.models import (
    FAMILIES,
    MODELS,
    HubRef,
    LocalRef,
    ModelNotFoundError,
    RandomInitRef,
    ZooRef,
    build_component,
    build_random_pipeline,
    call_settings,
    expected_params,
    family_of,
    generate,
    get_family,
    load_pipeline,
    origin,
    source_ref,
    tag_pipeline,
    tiny_overrides,
    tiny_pipeline,
)
from pruning import denoiser_of as denoiser

SDXL_UNET_PARAMS = 2_567_463_684
FLUX_DEV_TRANSFORMER_PARAMS = 11_901_408_320
# FLUX.1-schnell has no guidance embedder: two linears 256->3072 and 3072->3072 with biases
FLUX_SCHNELL_TRANSFORMER_PARAMS = FLUX_DEV_TRANSFORMER_PARAMS - (256 * 3072 + 3072 + 3072 * 3072 + 3072)
SIZE = 32  # tiny pipelines run at any multiple of 8; small is fast


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def no_network(monkeypatch):
    """Hub offline, and any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny_sdxl():
    return tiny_pipeline("sdxl", seed=0)


@pytest.fixture(scope="module")
def tiny_flux():
    return tiny_pipeline("flux-dev", seed=0)


# --------------------------------------------------------------------------- registry


def test_families_carry_their_published_settings():
    assert FAMILIES.names() == ["sdxl", "sdxl-turbo", "flux-dev", "flux-schnell"]
    sdxl, turbo, dev, schnell = (FAMILIES.get(n) for n in FAMILIES.names())
    assert (sdxl.pipeline_class, sdxl.denoiser_attr, sdxl.step_distilled) == (
        "StableDiffusionXLPipeline",
        "unet",
        False,
    )
    assert sdxl.hub_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert dict(sdxl.defaults) == {"steps": 50, "guidance": 5.0, "height": 1024, "width": 1024}
    assert turbo.hub_id == "stabilityai/sdxl-turbo" and turbo.step_distilled
    assert turbo.defaults["guidance"] == 0.0 and 1 <= turbo.defaults["steps"] <= 4
    assert (turbo.defaults["height"], turbo.defaults["width"]) == (512, 512)
    assert (dev.pipeline_class, dev.denoiser_attr, dev.hub_id) == (
        "FluxPipeline",
        "transformer",
        "black-forest-labs/FLUX.1-dev",
    )
    assert dev.defaults["steps"] == 50 and dev.defaults["guidance"] == 3.5
    assert schnell.hub_id == "black-forest-labs/FLUX.1-schnell" and schnell.step_distilled
    assert schnell.defaults["steps"] == 4 and schnell.defaults["guidance"] == 0.0
    assert schnell.defaults["max_sequence_length"] == 256
    assert sdxl.pipeline_cls().__name__ == "StableDiffusionXLPipeline"


def test_named_models_map_to_families():
    expected = {
        "digits-sdxl": "sdxl",
        "digits-sdxl-turbo": "sdxl-turbo",
        "digits-flux": "flux-dev",
        "digits-flux-schnell": "flux-schnell",
    }
    for name, family in expected.items():
        assert MODELS.get(name).family == family
        assert get_family(name).name == family
    for family in FAMILIES.names():  # every family is also a model with the hub id as source
        assert MODELS.get(family).ref == HubRef(repo=FAMILIES.get(family).hub_id)


@pytest.mark.parametrize(
    "call",
    [
        lambda: MODELS.get("sdxll"),
        lambda: get_family("sdxll"),
        lambda: source_ref("sdxll"),
        lambda: load_pipeline("sdxll"),
    ],
)
def test_typo_suggests_the_closest_model(call):
    with pytest.raises(UnknownNameError) as info:
        call()
    assert str(info.value).startswith("Unknown model 'sdxll'. Did you mean: sdxl?")


def test_call_settings_of_a_family_are_its_defaults():
    assert call_settings("flux-dev") == dict(FAMILIES.get("flux-dev").defaults)


def test_missing_zoo_model_says_how_to_build_it(monkeypatch, tmp_path):
    import ecodiff_bench.zoo as zoo

    monkeypatch.setattr(zoo, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        call_settings("digits-sdxl")
    assert "ecodiff-bench zoo train digits-sdxl" in str(info.value)
    with pytest.raises(ModelNotFoundError) as info:
        load_pipeline("digits-flux")
    assert "ecodiff-bench zoo train digits-flux" in str(info.value) and str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------- resolution and offline loading


def test_source_refs(tmp_path):
    assert source_ref("sdxl") == HubRef(repo="stabilityai/stable-diffusion-xl-base-1.0")
    assert source_ref("sdxl", "random-init") == RandomInitRef()
    turbo = HubRef(repo="stabilityai/sdxl-turbo", revision="abc", variant="fp16")
    assert source_ref("sdxl", turbo) is turbo  # a reference is taken as it is
    local = source_ref("flux-dev", tmp_path)
    assert local == LocalRef(path=str(tmp_path)) and local.folder == tmp_path.resolve()
    assert source_ref("sdxl", "./relative/dir") == LocalRef(path="./relative/dir")
    assert source_ref("digits-flux-schnell") == ZooRef(name="digits-flux-schnell")
    with pytest.raises(ValueError, match="random-init"):
        source_ref("digits-sdxl", "random-init")
    with pytest.raises(ValueError, match="does not hold"):
        source_ref("digits-sdxl", ZooRef(name="digits-flux"))


def test_hub_revision_and_variant_reach_from_pretrained(fake_from_pretrained, monkeypatch, tmp_path):
    from ecodiff_bench.models import loading

    monkeypatch.setattr(loading, "is_cached", lambda repo, cache_dir=None, revision=None: revision == "abc")
    load_pipeline("sdxl", HubRef(repo="org/sdxl", revision="abc", variant="fp16"), cache_dir=tmp_path)
    ((location, kwargs),) = fake_from_pretrained
    assert location == "org/sdxl" and kwargs["revision"] == "abc" and kwargs["variant"] == "fp16"
    assert kwargs["local_files_only"] is True and kwargs["use_safetensors"] is True
    with pytest.raises(ModelNotFoundError, match="at revision 'other'"):  # offline: the revision's files
        load_pipeline("sdxl", HubRef(repo="org/sdxl", revision="other"))
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    load_pipeline("sdxl", LocalRef(path=str(tmp_path / "pipe"), variant="bf16"))
    assert fake_from_pretrained[-1][1]["variant"] == "bf16" and "revision" not in fake_from_pretrained[-1][1]


def test_missing_local_dir_is_a_clear_error(no_network, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelNotFoundError) as info:
        load_pipeline("sdxl", missing)
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message and "model_index.json" in message
    assert "save_pretrained" in message  # the fix
    not_a_pipeline = tmp_path / "empty"
    not_a_pipeline.mkdir()
    with pytest.raises(ModelNotFoundError, match="not a diffusers pipeline directory"):
        load_pipeline("sdxl", not_a_pipeline)


@pytest.mark.parametrize("family", ["sdxl", "flux-dev"])
def test_uncached_hub_id_is_a_clear_error_without_network(no_network, tmp_path, family):
    hub_id = FAMILIES.get(family).hub_id
    with pytest.raises(ModelNotFoundError) as info:
        load_pipeline(family, cache_dir=tmp_path)
    err = info.value
    message = str(err)
    assert hub_id in message and str(tmp_path) in message
    assert f"hf download {hub_id}" in message and f"huggingface-cli download {hub_id}" in message
    assert "local pipeline directory" in message and "random-init" in message
    assert (err.looked_for.split()[0], err.where) == (hub_id, str(tmp_path))
    assert err.__cause__ is None
    assert isinstance(err, FileNotFoundError)


def test_online_load_failure_is_wrapped_too(no_network, tmp_path):
    # offline=False lets diffusers try the hub; HF_HUB_OFFLINE makes it fail: the user sees our error
    with pytest.raises(ModelNotFoundError) as info:
        load_pipeline("flux-schnell", offline=False, cache_dir=tmp_path)
    assert "black-forest-labs/FLUX.1-schnell" in str(info.value) and "hf download" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_meta_device_needs_random_init():
    with pytest.raises(ValueError, match="random-init"):
        load_pipeline("sdxl", device="meta")


# --------------------------------------------------------------------------- random-init, full size on meta


def test_full_size_denoisers_on_meta_have_the_published_counts():
    unet = build_component("sdxl", "unet", device="meta")
    assert n_params(unet) == SDXL_UNET_PARAMS
    assert all(p.is_meta for p in unet.parameters())
    dev = build_component("flux-dev", "transformer", device="meta", dtype=torch.bfloat16)
    assert n_params(dev) == FLUX_DEV_TRANSFORMER_PARAMS
    assert {p.dtype for p in dev.parameters()} == {torch.bfloat16}
    schnell = build_component("flux-schnell", "transformer", device="meta")
    assert n_params(schnell) == FLUX_SCHNELL_TRANSFORMER_PARAMS
    assert schnell.config.guidance_embeds is False and dev.config.guidance_embeds is True
    assert build_component("sdxl-turbo", "unet", device="meta").config.sample_size == 64


@pytest.mark.parametrize("family", ["sdxl", "sdxl-turbo", "flux-dev", "flux-schnell"])
def test_whole_random_pipeline_on_meta(family):
    pipe = load_pipeline(family, "random-init", device="meta", dtype=torch.float16)
    assert type(pipe).__name__ == FAMILIES.get(family).pipeline_class
    for component, count in expected_params(family).items():
        assert n_params(getattr(pipe, component)) == count, component
    assert {p.dtype for p in denoiser(pipe).parameters()} == {torch.float16}
    assert family_of(pipe) == family
    assert origin(pipe) == {"family": family, "model": family, "source": "random-init"}
    assert denoiser(pipe) is getattr(pipe, FAMILIES.get(family).denoiser_attr)


def test_published_component_counts():
    assert expected_params("sdxl")["unet"] == SDXL_UNET_PARAMS
    assert expected_params("flux-dev")["transformer"] == FLUX_DEV_TRANSFORMER_PARAMS
    assert expected_params("flux-schnell")["transformer"] == FLUX_SCHNELL_TRANSFORMER_PARAMS
    assert expected_params("flux-dev")["text_encoder_2"] == 4_762_310_656  # T5-XXL encoder
    assert expected_params("sdxl")["text_encoder_2"] == 694_659_840  # OpenCLIP bigG with projection


def test_random_init_overrides_are_validated():
    with pytest.raises(KeyError, match="unknown components"):
        build_random_pipeline("sdxl", overrides={"transformer": {}})
    with pytest.raises(KeyError, match="no component"):
        build_component("flux-dev", "unet")


def test_real_tensor_random_init_is_seeded_and_keeps_global_rng():
    overrides = tiny_overrides("flux-schnell")["transformer"]
    state = torch.random.get_rng_state()
    a = build_component("flux-schnell", "transformer", device="cpu", seed=3, overrides=overrides)
    assert torch.equal(state, torch.random.get_rng_state())
    b = build_component("flux-schnell", "transformer", device="cpu", seed=3, overrides=overrides)
    c = build_component("flux-schnell", "transformer", device="cpu", seed=4, overrides=overrides)
    assert not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    half = build_component(
        "flux-schnell", "transformer", device="cpu", dtype=torch.bfloat16, overrides=overrides
    )
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


# --------------------------------------------------------------------------- tokenizers


def test_offline_tokenizers():
    clip = models.clip_tokenizer()
    assert len(clip) == 49408 and (clip.bos_token_id, clip.eos_token_id) == (49406, 49407)
    # ids as open_clip's tokenizer gives them
    assert clip("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert models.clip_tokenizer(pad_token="!").pad_token_id == 0  # SDXL's tokenizer_2
    t5 = models.t5_tokenizer()
    assert len(t5) == 32100 and (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    assert t5.convert_tokens_to_ids("<extra_id_0>") == 32099
    ids = t5("a photo of a cat", padding="max_length", max_length=16).input_ids
    assert len(ids) == 16 and 2 not in ids and ids.count(1) == 1


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("fixture", ["tiny_sdxl", "tiny_flux"])
def test_generate_is_a_function_of_prompt_and_seed(request, fixture):
    pipe = request.getfixturevalue(fixture)
    kw = {"steps": 2, "height": SIZE, "width": SIZE}
    a = generate(pipe, ["a red circle", "a blue square"], [11, 12], **kw)
    assert a.shape == (2, 3, SIZE, SIZE) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert a.min().item() >= 0.0 and a.max().item() <= 1.0
    b = generate(pipe, ["a red circle", "a blue square"], [11, 12], **kw)
    assert torch.equal(a, b)
    c = generate(pipe, ["a red circle", "a blue square"], [13, 12], **kw)
    assert (a[0] - c[0]).abs().max() > 1e-2  # new seed, new image
    torch.testing.assert_close(a[1], c[1])  # image 1 does not depend on image 0's seed
    one_by_one = generate(pipe, ["a red circle", "a blue square"], [11, 12], batch_size=1, **kw)
    torch.testing.assert_close(a, one_by_one, atol=1e-4, rtol=0)
    pil = generate(pipe, "a red circle", [11], output_type="pil", **kw)
    assert len(pil) == 1 and pil[0].size == (SIZE, SIZE)


def test_generate_rejects_mismatched_inputs(tiny_sdxl):
    with pytest.raises(ValueError, match="2 prompts but 3 seeds"):
        generate(tiny_sdxl, ["a", "b"], [1, 2, 3])
    with pytest.raises(ValueError, match="output_type"):
        generate(tiny_sdxl, ["a"], [1], output_type="tensor")


class _RecordingPipe:
    """Stands in for a pipeline: records the call arguments."""

    def __init__(self):
        self.calls = []

    def set_progress_bar_config(self, **kwargs):
        pass

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        n = len(kwargs["prompt"])
        return type("Out", (), {"images": torch.zeros(n, 3, kwargs["height"], kwargs["width"])})()


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("sdxl", {"num_inference_steps": 50, "guidance_scale": 5.0, "height": 1024}),
        ("sdxl-turbo", {"guidance_scale": 0.0, "height": 512}),
        ("flux-dev", {"num_inference_steps": 50, "guidance_scale": 3.5, "max_sequence_length": 512}),
        ("flux-schnell", {"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256}),
    ],
)
def test_generate_passes_the_family_settings(family, expected):
    pipe = _RecordingPipe()
    tag_pipeline(pipe, family=family, model=family, source="test")
    generate(pipe, ["p1", "p2", "p3"], [1, 2, 3], batch_size=2)
    assert [len(c["prompt"]) for c in pipe.calls] == [2, 1]
    call = pipe.calls[0]
    assert {k: call[k] for k in expected} == expected
    assert ("max_sequence_length" in call) == family.startswith("flux")
    assert [g.initial_seed() for g in call["generator"]] == [1, 2]
    # explicit arguments and extra override the defaults
    generate(
        pipe, "p", [7], steps=3, guidance=1.5, extra={"max_sequence_length": 64, "height": 256, "width": 256}
    )
    last = pipe.calls[-1]
    assert (last["num_inference_steps"], last["guidance_scale"], last["height"]) == (3, 1.5, 256)


def test_family_of_untagged_pipelines(tiny_sdxl, tiny_flux):
    from diffusers import EulerAncestralDiscreteScheduler, FluxPipeline, StableDiffusionXLPipeline

    plain = StableDiffusionXLPipeline(**tiny_sdxl.components)
    assert origin(plain) is None and family_of(plain) == "sdxl"
    turbo_sched = EulerAncestralDiscreteScheduler.from_config(
        tiny_sdxl.scheduler.config, timestep_spacing="trailing"
    )
    turbo = StableDiffusionXLPipeline(**{**tiny_sdxl.components, "scheduler": turbo_sched})
    assert family_of(turbo) == "sdxl-turbo"
    assert family_of(FluxPipeline(**tiny_flux.components)) == "flux-dev"
    assert family_of(tiny_pipeline("flux-schnell")) == "flux-schnell"
    assert denoiser(tiny_flux) is tiny_flux.transformer and denoiser(tiny_sdxl) is tiny_sdxl.unet


def test_saved_pipeline_loads_offline_and_reproduces(no_network, tiny_sdxl, tmp_path):
    kw = {"steps": 2, "height": SIZE, "width": SIZE}
    before = generate(tiny_sdxl, ["a cat"], [5], **kw)
    tiny_sdxl.save_pretrained(tmp_path / "pipe")
    loaded = load_pipeline("sdxl", tmp_path / "pipe")
    assert origin(loaded) == {"family": "sdxl", "model": "sdxl", "source": str((tmp_path / "pipe").resolve())}
    torch.testing.assert_close(generate(loaded, ["a cat"], [5], **kw), before)
    half = load_pipeline("sdxl", tmp_path / "pipe", dtype=torch.bfloat16)
    assert {p.dtype for p in half.unet.parameters()} == {torch.bfloat16}


# --------------------------------------------------------------------------- digits zoo (when built)


@pytest.mark.parametrize("name", ["digits-sdxl", "digits-sdxl-turbo", "digits-flux", "digits-flux-schnell"])
def test_digits_models_load_and_generate(no_network, name):
    if not models.is_available(name):
        pytest.skip(f"{name} is not built (run `ecodiff-bench zoo train {name}`)")
    card = models.zoo_card(name)
    settings = call_settings(name)
    assert get_family(name).pipeline_arguments(settings) == card["call_kwargs"]
    pipe = load_pipeline(name)
    assert family_of(pipe) == get_family(name).name
    a = generate(pipe, ["a handwritten digit three", "a handwritten digit seven"], [0, 1])
    b = generate(pipe, ["a handwritten digit three", "a handwritten digit seven"], [0, 1])
    height = settings.get("height") or a.shape[-2]
    assert a.shape == (2, 3, height, settings.get("width") or a.shape[-1])
    assert torch.equal(a, b)
