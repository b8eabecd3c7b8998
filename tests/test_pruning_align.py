"""Hardware-aligned plans: FFN widths rounded to a multiple, heads whole, the achieved ratio reported."""

import pytest
import torch
from tiny import FLUX_CALL, SDXL_CALL, flux_pipeline, sdxl_pipeline

import pruning
from pruning import trajectory as tr
from pruning.architectures import prepare_trajectory
from pruning.masks import MaskSet

BUILDERS = {"sdxl": (sdxl_pipeline, SDXL_CALL), "flux": (flux_pipeline, FLUX_CALL)}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request):
    build, call = BUILDERS[request.param]
    pipe = build()
    den = pruning.denoiser_of(pipe)
    groups = pruning.find_groups(den)
    return pipe, den, groups, call


def _scores(groups, seed=1):
    return pruning.Scores("random", pruning.random_scores(groups, seed=seed))


def _ffn_widths(plan):
    return {name: (len(m.kept), m.total) for name, m in plan.modules.items() if m.kind == "ffn"}


@pytest.mark.parametrize("ranking", ["global", "per-kind", "per-layer"])
@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_aligned_widths_are_multiples_and_heads_are_untouched(model, ranking, ratio):
    _, den, groups, _ = model
    scores = _scores(groups)
    free = pruning.plan(den, scores, ratio, ranking=ranking)
    aligned = pruning.plan(den, scores, ratio, ranking=ranking, align=8)
    rounded = 0
    for name, (kept, total) in _ffn_widths(aligned).items():
        assert kept in (0, total) or kept % 8 == 0, (name, kept)
        rounded += kept != len(free.modules[name].kept)
    assert rounded > 0  # random scores leave unaligned widths: the test exercises the rounding
    for name, m in aligned.modules.items():
        if m.kind == "heads":
            assert m.kept == free.modules[name].kept
    # Kept units are chosen by score: each aligned module keeps its top-scoring units.
    for name, (kept, _) in _ffn_widths(aligned).items():
        top = torch.argsort(scores.values[name], descending=True)[:kept].tolist()
        assert sorted(aligned.modules[name].kept) == sorted(top)


def test_achieved_ratio_after_alignment_is_reported_and_close_to_the_target(model):
    _, den, groups, _ = model
    for ratio in (0.1, 0.2, 0.3, 0.4):
        plan = pruning.plan(den, _scores(groups, seed=int(ratio * 10)), ratio, align=8)
        achieved = plan.achieved()["params_removed_frac_of_prunable"]
        info = plan.info["align"]
        assert info["multiple"] == 8 and info["of"] == "params"
        assert info["removed_frac_after"] == pytest.approx(achieved)
        assert info["rounded_up"] + info["rounded_down"] > 0
        # The balance lands within one module's rounding step of the target, or no further from it than
        # the unaligned plan (whose last removed unit may be a large head).
        step = max(8 * g.params_per_unit for g in groups if g.kind == "ffn") / plan.prunable_params
        assert abs(achieved - ratio) <= max(step, abs(info["removed_frac_before"] - ratio))
        # and round-trips through JSON
        assert pruning.PruningPlan.from_dict(plan.to_dict()).info["align"] == info


def test_align_one_changes_nothing_and_bad_values_are_refused(model):
    _, den, groups, _ = model
    scores = _scores(groups)
    assert _ffn_widths(pruning.plan(den, scores, 0.3, align=1)) == _ffn_widths(pruning.plan(den, scores, 0.3))
    for bad in (0, -8, 2.5, True, "64"):
        with pytest.raises(ValueError, match="align must be a positive integer"):
            pruning.plan(den, scores, 0.3, align=bad)


def test_align_by_units_target(model):
    _, den, groups, _ = model
    plan = pruning.plan(den, _scores(groups), 0.3, target="units", align=8)
    assert plan.info["align"]["of"] == "units"
    assert plan.info["align"]["removed_frac_after"] == pytest.approx(plan.achieved()["units_removed_frac"])


def _hard_logits(groups, plan):
    return {
        g.name: torch.tensor([1.0 if u in set(plan.modules[g.name].kept) else -1.0 for u in range(g.n_units)])
        for g in groups
    }


def test_surgery_of_an_aligned_plan_equals_the_hard_masked_model(model):
    import copy

    pipe, _, _, call = model
    pipe = copy.deepcopy(pipe)
    den = pruning.denoiser_of(pipe)
    groups = pruning.find_groups(den)
    plan = pruning.plan(den, _scores(groups, seed=5), 0.3, align=8)
    sampling = {k: call[k] for k in ("height", "width", "max_sequence_length") if k in call}
    traj = prepare_trajectory(
        pipe, "a handwritten digit seven", 3, steps=2, guidance=call["guidance_scale"], **sampling
    )
    with torch.no_grad():
        with MaskSet(groups, "binary", logits=_hard_logits(groups, plan)).attach(den):
            masked = tr.run(traj, den)
        before = sum(p.numel() for p in den.parameters())
        pruning.apply(pipe, plan)
        pruned = tr.run(traj, den)
    assert (masked - pruned).abs().max().item() < 1e-4
    assert before - sum(p.numel() for p in den.parameters()) == plan.params_removed
    # the physical layers have the aligned widths (GEGLU: both halves)
    for g in groups:
        kept = len(plan.modules[g.name].kept)
        if g.kind == "ffn" and 0 < kept < g.n_units:
            producer = den.get_submodule(g.producers[0].path)
            assert producer.out_features == kept * len(g.producers[0].offsets)
            assert producer.out_features % 8 == 0


def test_full_size_sdxl_plan_aligned_to_64_on_meta():
    from ecodiff_bench.models import build_component

    den = build_component("sdxl", "unet", device="meta")
    groups = pruning.find_groups(den)
    plan = pruning.plan(den, _scores(groups), 0.2, align=64)
    widths = _ffn_widths(plan)
    assert all(k in (0, n) or k % 64 == 0 for k, n in widths.values())
    assert sum(0 < k < n for k, n in widths.values()) > 20
    assert abs(plan.achieved()["params_removed_frac_of_prunable"] - 0.2) < 0.002
