"""Scoring methods, plans, training robustness and save/load of pruned pipelines."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny import SDXL_CALL, flux_pipeline, sdxl_pipeline
from torch import nn

import pruning
from pruning.methods.ecodiff import EcoDiffConfig, ecodiff_scores
from pruning.methods.unit_weights import per_unit
from pruning.targets import Consumer, Producer, UnitGroup

PROMPTS = ["a handwritten digit seven", "a handwritten digit one", "a handwritten digit three"]
SDXL_SAMPLING = {"steps": 4, "guidance": 5.0, "height": 16, "width": 16}
FLUX_SAMPLING = {"steps": 4, "guidance": 3.5, "height": 16, "width": 16, "max_sequence_length": 8}


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(3, 4)  # 2 units of width 2 (rows 0-1 and 2-3)
        self.down = nn.Linear(4, 2, bias=False)


def test_taylor_importance_matches_hand_calculation():
    torch.manual_seed(0)
    toy = TwoLayer()
    group = UnitGroup("toy:heads", "heads", "", 2, 2, [Producer("up")], [Consumer("down")], None)
    for p in toy.parameters():
        p.grad = torch.randn_like(p)
    got = per_unit(toy, group, lambda p: (p * p.grad).abs())
    wg = {n: (p * p.grad).abs() for n, p in toy.named_parameters()}
    expected = [
        wg["up.weight"][2 * u : 2 * u + 2].sum()
        + wg["up.bias"][2 * u : 2 * u + 2].sum()
        + wg["down.weight"][:, 2 * u : 2 * u + 2].sum()
        for u in range(2)
    ]
    assert torch.allclose(got.float(), torch.stack(expected).float(), rtol=1e-6)


def test_geglu_units_own_rows_in_both_halves():
    den = sdxl_pipeline().unet
    ff = next(g for g in pruning.find_groups(den) if g.kind == "ffn")
    lin = den.get_submodule(ff.producers[0].path)
    assert ff.producers[0].offsets == (0, ff.n_units) and lin.out_features == 2 * ff.n_units
    assert (
        ff.params_per_unit == 2 * (lin.in_features + 1) + den.get_submodule(ff.consumers[0].path).out_features
    )


@pytest.mark.parametrize("ranking", pruning.RANKINGS)
@pytest.mark.parametrize("target", pruning.TARGETS)
def test_plan_reaches_target_and_round_trips(ranking, target, tmp_path):
    den = flux_pipeline().transformer
    groups = pruning.find_groups(den)
    scores = pruning.Scores("magnitude", pruning.magnitude_scores(den, groups))
    plan = pruning.plan(den, scores, 0.25, target=target, ranking=ranking)
    achieved = plan.achieved()
    key = "params_removed_frac_of_prunable" if target == "params" else "units_removed_frac"
    assert 0.25 <= achieved[key] < 0.25 + 0.1
    if ranking == "per-layer":  # every group reaches the target on its own
        assert all(m.n_removed > 0 for m in plan.modules.values())
    again = pruning.PruningPlan.load(plan.save(tmp_path / "plan.json"))
    assert again.to_dict() == plan.to_dict()
    assert json.loads((tmp_path / "plan.json").read_text())["achieved"][key] == achieved[key]


def test_plan_removes_lowest_scores_first():
    den = sdxl_pipeline().unet
    groups = pruning.find_groups(den)
    scores = {g.name: torch.arange(g.n_units, dtype=torch.float32) for g in groups}
    plan = pruning.plan(den, pruning.Scores("x", scores), 0.3, ranking="per-layer")
    for g in groups:
        kept = plan.modules[g.name].kept
        assert kept == list(range(g.n_units - len(kept), g.n_units))


def test_bad_plan_arguments_are_named():
    den = sdxl_pipeline().unet
    scores = pruning.Scores("random", pruning.random_scores(pruning.find_groups(den)))
    with pytest.raises(ValueError, match="ratio"):
        pruning.plan(den, scores, 1.5)
    with pytest.raises(ValueError, match="ranking must be one of"):
        pruning.plan(den, scores, 0.2, ranking="everywhere")
    with pytest.raises(ValueError, match="unknown pruning method 'ecodif'"):
        pruning.score(sdxl_pipeline(), "ecodif", PROMPTS)


def test_taylor_threshold_stops_at_the_first_low_loss_step():
    pipe = sdxl_pipeline()
    opts = {"timestep_stride": 100, "progress": False}
    every = pruning.score(
        pipe, "taylor", PROMPTS[:2], sampling=SDXL_SAMPLING, options={**opts, "threshold": 0}
    )
    losses = [row["loss"] for row in every.info["losses"]]
    assert len(losses) == 10  # threshold 0 keeps every visited timestep
    # Pick a threshold that the loss sequence crosses, and predict the stop by hand.
    ratios = [losses[t] / max(losses[:t]) for t in range(1, len(losses))]
    threshold = min(ratios) + 1e-6
    expected = 1 + next(i for i, r in enumerate(ratios) if r < threshold)
    early = pruning.score(
        pipe, "taylor", PROMPTS[:2], sampling=SDXL_SAMPLING, options={**opts, "threshold": threshold}
    )
    assert early.info["timesteps_used"] == expected
    assert all(torch.isfinite(v).all() and (v >= 0).all() for v in early.values.values())
    assert all(p.grad is None for p in pipe.unet.parameters())  # no gradient left behind


def test_taylor_on_flux():
    scores = pruning.score(
        flux_pipeline(),
        "taylor",
        PROMPTS[:2],
        sampling=FLUX_SAMPLING,
        options={"timestep_stride": 250, "progress": False},
    )
    assert scores.info["timesteps_used"] >= 1 and any(v.sum() > 0 for v in scores.values.values())


def _train(pipe, ckpt=None, **cfg):
    groups = pruning.find_groups(pipe.unet)
    config = EcoDiffConfig(**{"target_sparsity": 0.3, "epochs": 2, "accumulate": 2, "progress": False, **cfg})
    return ecodiff_scores(pipe, groups, PROMPTS, SDXL_SAMPLING, config, ckpt)


def test_ecodiff_learns_and_regularizer_closes_gates():
    pipe = sdxl_pipeline()
    scores, info = _train(pipe, controller="none", target_sparsity=None, beta_reg=5.0, lr=0.5, accumulate=1)
    assert len(info["curve"]) == 2 * len(PROMPTS)  # one optimizer step per prompt
    first, last = info["curve"][0]["expected_sparsity"], info["curve"][-1]["expected_sparsity"]
    assert last > first  # the fixed penalty pushes logits down from their start at 3
    assert any((v != 3.0).any() for v in scores.values())


def test_ecodiff_resumes_to_the_same_result(tmp_path):
    pipe = sdxl_pipeline()
    straight, _ = _train(pipe)
    # Interrupt after the first optimizer step by training one epoch into the same checkpoint, then resume.
    _train(pipe, tmp_path / "ck", epochs=2, extra={})  # full run writes checkpoints
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["position"] == 3  # optimizer steps: 2 epochs x 3 prompts, 2 samples per step
    resumed, info = _train(pipe, tmp_path / "ck")
    assert info["resumed_from"] == 3
    for name in straight:
        assert torch.equal(straight[name], resumed[name])


def test_ecodiff_partial_run_resumes_identically(tmp_path, monkeypatch):
    pipe = sdxl_pipeline()
    straight, _ = _train(pipe)
    calls = {"n": 0}
    original = pruning.trajectory.checkpointed_backward

    def crash_on_fifth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill")
        return original(*a, **k)

    monkeypatch.setattr(pruning.trajectory, "checkpointed_backward", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        _train(pipe, tmp_path / "ck")
    monkeypatch.setattr(pruning.trajectory, "checkpointed_backward", original)
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["position"] == 2  # 2 samples per step
    resumed, info = _train(pipe, tmp_path / "ck")
    assert info["resumed_from"] == 2
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], atol=1e-6)


def test_ecodiff_stops_on_nan_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    pipe = sdxl_pipeline()
    original = pruning.trajectory.checkpointed_backward
    calls = {"n": 0}

    def nan_on_fourth(*a, **k):
        calls["n"] += 1
        loss, z = original(*a, **k)
        return (loss * float("nan") if calls["n"] == 4 else loss), z

    monkeypatch.setattr(pruning.trajectory, "checkpointed_backward", nan_on_fourth)
    with pytest.raises(
        pruning.TrainingDiverged, match="diverged at optimizer step 1.*last good checkpoint kept"
    ):
        _train(pipe, tmp_path / "ck")
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["position"] == 1 and all(json.dumps(c) for c in state["curve"])
    # The masks' hooks are gone: the model is back to its unmasked self.
    assert all(not m._forward_pre_hooks for m in pipe.unet.modules())


def test_prune_save_and_load_in_a_fresh_process(tmp_path):
    pipe = sdxl_pipeline()
    plan = pruning.prune(pipe, "magnitude", 0.3)
    pruning.apply(pipe, plan)
    expected = pipe(
        PROMPTS[0], generator=torch.Generator().manual_seed(0), output_type="pt", **SDXL_CALL
    ).images
    out = pruning.save(pipe, plan, tmp_path / "pruned", copy_components=True)
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import torch, pruning
        pipe = pruning.load({str(out)!r})
        assert type(pipe).__name__ == "StableDiffusionXLPipeline"
        img = pipe({PROMPTS[0]!r}, generator=torch.Generator().manual_seed(0), output_type="pt",
                   num_inference_steps=4, guidance_scale=5.0, height=16, width=16).images
        ref = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        print("maxdiff", (img - ref).abs().max().item())
        assert (img - ref).abs().max().item() < 1e-5
    """)
    env = {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl"))


def test_pruned_digits_model_loads_in_a_fresh_process(tmp_path):
    from diffusers import FluxPipeline

    from ecodiff_bench.zoo import card, zoo_path

    base = zoo_path("digits-flux-schnell")
    call = card("digits-flux-schnell")["call_kwargs"]
    pipe = FluxPipeline.from_pretrained(base)
    plan = pruning.prune(pipe, "magnitude", 0.3)
    pruning.apply(pipe, plan)
    expected = pipe(
        "a handwritten digit four", generator=torch.Generator().manual_seed(1), output_type="pt", **call
    ).images
    out = pruning.save(pipe, plan, tmp_path / "pruned", base=str(base))  # weights + plan, base by reference
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import torch, pruning
        pipe = pruning.load({str(out)!r}, base={str(base)!r})  # a local base is not recorded (a machine path)
        img = pipe("a handwritten digit four", generator=torch.Generator().manual_seed(1), output_type="pt",
                   **{call!r}).images
        ref = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        assert (img - ref).abs().max().item() < 1e-5, (img - ref).abs().max().item()
    """)
    env = {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sum(f.stat().st_size for f in out.rglob("*.safetensors")) < sum(
        f.stat().st_size for f in (base / "transformer").rglob("*.safetensors")
    )
