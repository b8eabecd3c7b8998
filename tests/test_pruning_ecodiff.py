"""EcoDiff mask training: expected sparsity, the Lagrangian controller, batching, resuming, plan records."""

import json
import math

import pytest
import torch
from tiny import flux_pipeline, sdxl_pipeline
from torch import nn

import pruning
from pruning import architectures, trajectory
from pruning.masks import OPEN_SHIFT, MaskSet
from pruning.methods.ecodiff import EcoDiffConfig, ecodiff_scores
from pruning.methods.mask_training import MaskTrainer
from pruning.methods.sparsity import LagrangianController, closed_share, expected_removed
from pruning.targets import Consumer, Producer, UnitGroup

PROMPTS = ["a handwritten digit seven", "a handwritten digit one", "a handwritten digit three"]
SDXL_SAMPLING = {"steps": 4, "guidance": 5.0, "height": 16, "width": 16}
FLUX_SAMPLING = {"steps": 4, "guidance": 3.5, "height": 16, "width": 16, "max_sequence_length": 8}


# --- expected sparsity ------------------------------------------------------------------------------------------


def _groups():
    heads = UnitGroup(
        "a:heads",
        "heads",
        "a",
        3,
        2,
        [Producer("a.up")],
        [Consumer("a.down")],
        "a",
        params_per_unit=100,
        params_shared=40,
    )
    ffn = UnitGroup(
        "b:ffn",
        "ffn",
        "b",
        2,
        1,
        [Producer("b.up")],
        [Consumer("b.down")],
        "b",
        params_per_unit=10,
        params_shared=6,
    )
    return [heads, ffn]


def test_cost_weighted_expected_sparsity_matches_a_hand_computation():
    masks = MaskSet(
        _groups(), logits={"a:heads": torch.tensor([3.0, -1.0, -4.0]), "b:ffn": torch.tensor([0.0, -6.0])}
    )
    shift = 0.83 * math.log(0.1 / 1.1)  # a hard-concrete gate is open iff logit + logistic noise > shift
    q = {
        name: [1 - 1 / (1 + math.exp(-(v - shift))) for v in logits.tolist()]
        for name, logits in masks.named_logits().items()
    }
    removed = (
        100 * sum(q["a:heads"])
        + 40 * math.prod(q["a:heads"])
        + 10 * sum(q["b:ffn"])
        + 6 * math.prod(q["b:ffn"])
    )
    total = 3 * 100 + 40 + 2 * 10 + 6
    assert expected_removed(masks, "params").item() == pytest.approx(removed / total, rel=1e-6)
    assert expected_removed(masks, "units").item() == pytest.approx(
        sum(q["a:heads"] + q["b:ffn"]) / 5, rel=1e-6
    )
    layer_mean = (sum(q["a:heads"]) / 3 + sum(q["b:ffn"]) / 2) / 2
    assert expected_removed(masks, "layer-mean").item() == pytest.approx(layer_mean, rel=1e-6)
    # closed: P(open) < 0.5, i.e. logit < shift; the plan would remove heads 2 and FFN unit 1
    assert pytest.approx(shift) == OPEN_SHIFT
    assert closed_share(masks) == pytest.approx((100 + 10) / total)


@pytest.mark.parametrize("bound", [None, 1.1])
def test_gate_open_probability_matches_sampled_masks(bound):
    group = UnitGroup("g:ffn", "ffn", "g", 7, 1, [], [], None, params_per_unit=1)
    logits = torch.tensor([-5.0, -3.0, -2.0, -1.0, 0.0, 1.0, 3.0])
    masks = MaskSet([group], logits={"g:ffn": logits}, noise_bound=bound)
    opened = torch.zeros(7)
    for seed in range(4000):
        masks.resample(seed)
        opened += (masks.mask("g:ffn") > 0).float()
    assert torch.allclose(opened / 4000, masks.p_open("g:ffn").detach(), atol=0.03)


# --- the controller on a toy with a known answer ----------------------------------------------------------------


class Toy(nn.Module):
    """Two unit groups summed into one output; units whose output columns are zero do not matter."""

    def __init__(self, heads=8, width=4, ffn=32, dim=16):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.up1, self.down1 = nn.Linear(dim, heads * width), nn.Linear(heads * width, dim, bias=False)
        self.up2, self.down2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            self.important = {
                "h:heads": torch.arange(heads) >= heads // 2,
                "f:ffn": torch.arange(ffn) >= ffn // 2,
            }
            self.down1.weight.mul_(self.important["h:heads"].float().repeat_interleave(width))
            self.down2.weight.mul_(self.important["f:ffn"].float())
        self.requires_grad_(False)
        self.groups = [
            UnitGroup(
                "h:heads",
                "heads",
                "h",
                heads,
                width,
                [Producer("up1")],
                [Consumer("down1")],
                None,
                params_per_unit=width * (2 * dim + 1),
            ),
            UnitGroup(
                "f:ffn",
                "ffn",
                "f",
                ffn,
                1,
                [Producer("up2")],
                [Consumer("down2")],
                None,
                params_per_unit=2 * dim + 1,
            ),
        ]

    def forward(self, x):
        return self.down1(torch.relu(self.up1(x))) + self.down2(torch.relu(self.up2(x)))


def _toy_training(cfg, steps, checkpoint_dir=None, stop_after=None):
    toy = Toy()
    masks = MaskSet(toy.groups)
    trainer = MaskTrainer(masks, cfg, steps, checkpoint_dir, {"toy": 1})
    masks.attach(toy)

    def sample_loss(step, m):
        if stop_after is not None and step == stop_after:
            raise KeyboardInterrupt("simulated kill")
        x = torch.randn(32, 16, generator=torch.Generator().manual_seed(step))
        with masks.using("off"), torch.no_grad():
            ref = toy(x)
        masks.resample(step)
        loss = (toy(x) - ref).pow(2).mean() / ref.var()
        loss.backward()
        return loss.item()

    try:
        info = trainer.run(sample_loss)
    finally:
        masks.detach()
    return toy, masks, info


def test_controller_closes_exactly_the_unimportant_units_and_lands_on_the_target():
    toy = Toy()
    unimportant = sum(g.params_per_unit * int((~toy.important[g.name]).sum()) for g in toy.groups)
    # 0.5: half the heads and half the FFN units
    target = unimportant / sum(g.params_total for g in toy.groups)
    cfg = EcoDiffConfig(target_sparsity=target, lr=0.1, accumulate=1, progress=False)
    toy, masks, info = _toy_training(cfg, steps=300)
    for name, important in toy.important.items():
        assert torch.equal(masks.closed(name), ~important), name
    assert abs(info["expected_sparsity"] - target) < 0.03
    assert info["closed_share"] == pytest.approx(target)
    ramp = [row["target"] for row in info["curve"]]
    assert ramp[0] < 0.01 and ramp[119] == pytest.approx(target) and ramp[-1] == pytest.approx(target)


def test_fixed_penalty_mode_has_no_target_and_is_not_ratio_specific():
    assert not pruning.ratio_specific("ecodiff", {"controller": "none", "beta_reg": 0.5})
    assert pruning.ratio_specific("ecodiff", {"target_sparsity": 0.2})
    assert pruning.ratio_specific("ecodiff", {}) and not pruning.ratio_specific(
        "ecodiff", {"controller": "none"}
    )
    assert not pruning.ratio_specific("taylor", {})
    _, _, info = _toy_training(EcoDiffConfig(controller="none", accumulate=1, progress=False), steps=5)
    assert info["lambda1"] is None and "target" not in info["curve"][0]


def test_damping_brakes_the_multiplier_once_the_error_changes_sign():
    ctl = LagrangianController(target=0.4, warmup_steps=0, dual_lr=1.0)
    ctl.update(0.1, 0)  # too little sparsity: lambda1 goes negative (pushes sparsity up)
    assert ctl.lambda1 == pytest.approx(-0.3)
    ctl.update(0.45, 1)  # overshoot: plain dual ascent would still push up (-0.25); damping resets it
    assert ctl.lambda1 == 0.0 and ctl.lambda2 == pytest.approx(0.09 + 0.0025)
    ctl.update(0.45, 2)
    assert ctl.lambda1 == pytest.approx(0.05)  # now it pulls sparsity back down


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="needs target_sparsity="):
        EcoDiffConfig()
    with pytest.raises(ValueError, match="controller must be one of lagrangian, none; got 'pid'"):
        EcoDiffConfig(target_sparsity=0.2, controller="pid")
    with pytest.raises(ValueError, match="penalty must be one of params, units, layer-mean"):
        EcoDiffConfig(target_sparsity=0.2, penalty="l2")
    with pytest.raises(ValueError, match="target_sparsity must lie in"):
        EcoDiffConfig(target_sparsity=1.5)
    with pytest.raises(TypeError, match="calibration item 1"):
        pruning.score(
            sdxl_pipeline(), "ecodiff", ["a", 3], sampling=SDXL_SAMPLING, options={"target_sparsity": 0.2}
        )


def test_resuming_a_controlled_run_gives_identical_logits(tmp_path):
    cfg = EcoDiffConfig(target_sparsity=0.3, lr=0.2, accumulate=2, progress=False)
    _, straight, straight_info = _toy_training(cfg, steps=40)
    with pytest.raises(KeyboardInterrupt):
        _toy_training(cfg, steps=40, checkpoint_dir=tmp_path, stop_after=23)
    assert json.loads((tmp_path / "state.json").read_text())["position"] == 23
    _, resumed, info = _toy_training(cfg, steps=40, checkpoint_dir=tmp_path)
    assert info["resumed_from"] == 23
    for name in straight.groups:
        assert torch.equal(straight.logit(name), resumed.logit(name))
    assert (info["lambda1"], info["lambda2"]) == (straight_info["lambda1"], straight_info["lambda2"])


# --- on pipelines ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, sampling", [(sdxl_pipeline, SDXL_SAMPLING), (flux_pipeline, FLUX_SAMPLING)])
def test_stacked_trajectories_follow_each_pair(make, sampling):
    pipe = make()
    den = pruning.denoiser_of(pipe)
    kw = {k: v for k, v in sampling.items() if k != "max_sequence_length"}
    msl = sampling.get("max_sequence_length", 512)
    trajs = [
        architectures.prepare_trajectory(pipe, p, seed, max_sequence_length=msl, **kw)
        for p, seed in pruning.pairs(PROMPTS[:2], [5, 9])
    ]
    memo: dict = {}  # one encoding per prompt, shared by its seeds
    memoised = [
        architectures.prepare_trajectory(pipe, p, seed, max_sequence_length=msl, memo=memo, **kw)
        for p, seed in pruning.pairs(PROMPTS[:2], [5, 9])
    ]
    assert len(memo) == 2
    with torch.no_grad():
        alone = torch.cat([trajectory.run(t, den) for t in trajs])
        together = trajectory.run(trajectory.stack(memoised), den)
    # Batched and per-sample kernels reduce in another order (AVX2 vs AVX-512 differ too): a few float32 ulps
    # per operation, compounded over the steps. A wrong pairing of noise and prompt differs by O(the values).
    tolerance = 1e3 * torch.finfo(alone.dtype).eps * float(alone.abs().max())
    torch.testing.assert_close(together, alone, rtol=0, atol=tolerance)


def test_ecodiff_plan_records_target_sparsity_agreement_steps_and_time():
    pipe = sdxl_pipeline()
    calibration = pruning.pairs(PROMPTS[:2], [100, 101])
    plan = pruning.prune(
        pipe,
        "ecodiff",
        0.3,
        calibration,
        sampling=SDXL_SAMPLING,
        options={"steps": 6, "batch": 2, "accumulate": 2, "lr": 0.5, "progress": False},
    )
    eco = plan.info["ecodiff"]
    assert eco["target"] == eco["trained_target"] == 0.3 and eco["controller"] == "lagrangian"
    assert eco["steps"] == 6 and eco["train_time_s"] > 0
    assert 0.0 <= eco["expected_sparsity"] < 1.0 and 0.0 <= eco["agreement"] <= 1.0
    assert json.loads(json.dumps(plan.to_dict()))["info"]["ecodiff"] == eco
    scores = pruning.Scores(
        "ecodiff", {n: torch.zeros(m.total) for n, m in plan.modules.items()}, {"target": 0.3}
    )
    with pytest.warns(UserWarning, match="trained to remove 30% are cut at 50%") as caught:
        pruning.plan(pipe, scores, 0.5)
    assert caught[0].filename == __file__  # the warning points at the call of pruning.plan
    assert "ecodiff" not in pruning.plan(pipe, pruning.Scores("x", scores.values), 0.5).info


def test_ecodiff_trains_on_prompt_seed_pairs_batched(monkeypatch):
    pipe = flux_pipeline()
    seen = []
    original = architectures.prepare_trajectory

    def spy(pipe, prompt, seed, **kw):
        seen.append((prompt, seed))
        return original(pipe, prompt, seed, **kw)

    monkeypatch.setattr(architectures, "prepare_trajectory", spy)
    calibration = pruning.pairs(PROMPTS, [7, 8])
    groups = pruning.find_groups(pipe.transformer)
    cfg = EcoDiffConfig(target_sparsity=0.2, epochs=2, batch=3, accumulate=2, progress=False)
    _, info = ecodiff_scores(pipe, groups, calibration, FLUX_SAMPLING, cfg)
    assert sorted(seen) == sorted(calibration)  # every pair prepared once, with its own seed
    assert info["steps"] == 2 and info["samples_per_step"] == 6 and info["calibration_pairs"] == 6
