"""Invariants of the pruning library on tiny SDXL- and FLUX-architecture pipelines (fp32, CPU)."""

import copy

import pytest
import torch
from tiny import FLUX_CALL, SDXL_CALL, flux_pipeline, sdxl_pipeline

import pruning
from pruning import trajectory as tr
from pruning.architectures import prepare_trajectory
from pruning.masks import MaskSet

PROMPT = "a handwritten digit seven"


def _sampling(call):
    return {
        "steps": call["num_inference_steps"],
        "guidance": call["guidance_scale"],
        "height": call["height"],
        "width": call["width"],
        **({"max_sequence_length": call["max_sequence_length"]} if "max_sequence_length" in call else {}),
    }


CASES = {
    "sdxl": (sdxl_pipeline, SDXL_CALL),
    "sdxl-ancestral": (lambda: sdxl_pipeline(scheduler="euler-ancestral"), SDXL_CALL),
    "flux": (flux_pipeline, FLUX_CALL),
    "flux-schnell": (lambda: flux_pipeline(guidance_embeds=False), {**FLUX_CALL, "guidance_scale": 0.0}),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    """(name, fresh-copy factory, call kwargs); each pipeline is built once per module and copied."""
    build, call = CASES[request.param]
    pipe = build()
    return request.param, lambda: copy.deepcopy(pipe), call


def _trajectory(pipe, call, seed=3):
    return prepare_trajectory(pipe, PROMPT, seed, **_sampling(call))


def test_pure_trajectory_reproduces_the_pipeline(case):
    name, build, call = case
    pipe = build()
    expected = pipe(PROMPT, generator=torch.Generator().manual_seed(3), output_type="latent", **call).images
    if name == "sdxl-ancestral":
        pytest.skip("the pipeline draws ancestral noise from its generator differently; purity tested below")
    with torch.no_grad():
        got = tr.run(_trajectory(pipe, call), pruning.denoiser_of(pipe))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_step_is_pure_and_repeatable(case):
    _, build, call = case
    pipe = build()
    traj = _trajectory(pipe, call)
    den = pruning.denoiser_of(pipe)
    with torch.no_grad():
        a = tr.run(traj, den)
        b = tr.run(traj, den)  # a scheduler with an internal index would drift here
    assert torch.equal(a, b)


def test_unit_discovery_counts(case):
    _, build, _ = case
    den = pruning.denoiser_of(build())
    groups = pruning.find_groups(den)
    kinds = {g.kind for g in groups}
    assert kinds == {"heads", "ffn"}
    for g in groups:
        assert g.n_units > 0 and g.params_per_unit > 0
    if den.__class__.__name__ == "UNet2DConditionModel":
        # (1 + 2) transformer blocks down, (2 + 2)*... every BasicTransformerBlock has attn1, attn2 and ff
        n_blocks = sum(1 for m in den.modules() if m.__class__.__name__ == "BasicTransformerBlock")
        assert len(groups) == 3 * n_blocks
    else:
        # double blocks: joint attention + ff + ff_context; single blocks: attention + MLP
        assert len(groups) == 3 * 2 + 2 * 2
        assert sum(g.n_units for g in groups if g.kind == "heads") == 4 * 3


def test_hard_masks_with_every_unit_open_change_nothing(case):
    _, build, call = case
    pipe = build()
    den = pruning.denoiser_of(pipe)
    traj = _trajectory(pipe, call)
    with torch.no_grad():
        before = tr.run(traj, den)
        with MaskSet(pruning.find_groups(den)).attach(den) as masks, masks.using("hard"):
            after = tr.run(traj, den)
    assert torch.equal(before, after)


def _grads(masks):
    return torch.cat([p.grad.flatten() for p in masks.parameters()])


@pytest.mark.parametrize("parametrization", ["hard-concrete", "sigmoid"])
def test_checkpointed_gradients_equal_full_backprop(case, parametrization):
    _, build, call = case
    pipe = build()
    den = pruning.denoiser_of(pipe).requires_grad_(False)
    traj = _trajectory(pipe, call)
    assert traj.steps >= 4
    masks = MaskSet(pruning.find_groups(den), parametrization).attach(den)
    with torch.no_grad():
        with masks.using("off"):
            ref = tr.run(traj, den)
        for p in masks.parameters():  # spread the logits so gates are partly open
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 2 + 0.5)

    def loss_fn(z):
        return torch.nn.functional.mse_loss(z, ref + 0.05)

    def before_step(i):
        masks.resample(1000 + i)

    loss_full, _ = tr.full_backward(traj, den, loss_fn, before_step)
    g_full = _grads(masks)
    masks.zero_grad()
    loss_ckpt, _ = tr.checkpointed_backward(traj, den, loss_fn, before_step)
    g_ckpt = _grads(masks)
    masks.detach()
    assert g_full.norm() > 0
    assert torch.isclose(loss_full, loss_ckpt)
    assert ((g_full - g_ckpt).norm() / g_full.norm()).item() < 1e-4


def _hard_logits(groups, plan):
    return {
        g.name: torch.tensor([1.0 if u in set(plan.modules[g.name].kept) else -1.0 for u in range(g.n_units)])
        for g in groups
    }


def test_surgery_equals_hard_masked_model(case):
    _, build, call = case
    pipe = build()
    den = pruning.denoiser_of(pipe)
    groups = pruning.find_groups(den)
    plan = pruning.plan(den, pruning.Scores("random", pruning.random_scores(groups, seed=1)), 0.3)
    # Remove one attention module and one feed-forward entirely: they must become exact constants.
    plan.modules[next(g.name for g in groups if g.kind == "heads")].kept = []
    plan.modules[next(g.name for g in groups if g.kind == "ffn")].kept = []
    traj = _trajectory(pipe, call)
    with torch.no_grad():
        with MaskSet(groups, "binary", logits=_hard_logits(groups, plan)).attach(den):
            masked = tr.run(traj, den)
        n_before = sum(p.numel() for p in den.parameters())
        pruning.apply(pipe, plan)
        n_after = sum(p.numel() for p in den.parameters())
        pruned = tr.run(traj, den)
    assert (masked - pruned).abs().max().item() < 1e-4
    assert n_before - n_after == plan.params_removed
    assert any(isinstance(m, pruning.targets.ConstantModule) for m in den.modules())
    # The stock pipeline still runs end to end on the smaller model.
    image = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **call).images
    assert image.shape[-2:] == (call["height"], call["width"]) and torch.isfinite(image).all()


def test_surgery_rejects_a_plan_for_another_model():
    sdxl, flux = sdxl_pipeline().unet, flux_pipeline().transformer
    groups = pruning.find_groups(flux)
    plan = pruning.plan(flux, pruning.Scores("random", pruning.random_scores(groups)), 0.2)
    with pytest.raises(ValueError, match="does not have"):
        pruning.apply_plan(sdxl, plan)
    name = next(iter(plan.modules))
    plan.modules[name].kept = [0, 0]
    with pytest.raises(ValueError, match="invalid kept indices"):
        pruning.apply_plan(flux, plan)


@pytest.mark.parametrize(
    ("family", "heads", "ffn_units"),
    [("sdxl", 2_600, 332_800), ("flux-dev", 1_368, 933_888)],  # the unit counts METHODS.md gives
)
def test_full_size_unit_counts_and_plan_on_meta(family, heads, ffn_units):
    from ecodiff_bench.models import build_component

    den = build_component(family, "unet" if family == "sdxl" else "transformer", device="meta")
    groups = pruning.find_groups(den)
    assert sum(g.n_units for g in groups if g.kind == "heads") == heads
    assert sum(g.n_units for g in groups if g.kind == "ffn") == ffn_units
    plan = pruning.plan(den, pruning.Scores("random", pruning.random_scores(groups)), 0.2)
    before = sum(p.numel() for p in den.parameters())
    pruning.apply_plan(den, plan)
    assert before - sum(p.numel() for p in den.parameters()) == plan.params_removed
    assert 0.2 <= plan.achieved()["params_removed_frac_of_prunable"] < 0.2001
