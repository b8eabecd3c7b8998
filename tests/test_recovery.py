"""Recovery after pruning: distillation toward the unpruned model, LoRA merging, checkpoints, saved models."""

import copy
import json
from pathlib import Path

import pytest
import torch
from tiny import FLUX_CALL, flux_pipeline, fresh_python, sdxl_pipeline

import pruning
from pruning import recovery
from pruning.architectures import prepare_trajectory
from pruning.recovery import RecoveryConfig, RecoveryDiverged, recover

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a handwritten digit seven", "a handwritten digit one", "a handwritten digit three"]
FLUX_SAMPLING = {"steps": 4, "guidance": 3.5, "height": 16, "width": 16, "max_sequence_length": 8}
SDXL_SAMPLING = {"steps": 3, "guidance": 5.0, "height": 16, "width": 16}


def _pruned(make=flux_pipeline, ratio=0.4):
    base = make()
    base.set_progress_bar_config(disable=True)
    den = pruning.denoiser_of(base)
    plan = pruning.plan(
        base, pruning.Scores("random", pruning.random_scores(pruning.find_groups(den), 0)), ratio
    )
    return base, pruning.apply(copy.deepcopy(base), plan), plan


def _cfg(**kw):
    lr = {"lora": 3e-3, "full": 5e-4}[kw.get("mode", "lora")]
    return RecoveryConfig(**{"steps": 6, "batch": 4, "lr": lr, "progress": False, **kw})


def _weights(pipe):
    return {k: v.clone() for k, v in pruning.denoiser_of(pipe).state_dict().items()}


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_recovery_lowers_the_distillation_loss_and_leaves_a_plain_pruned_model(mode):
    base, pruned, _ = _pruned()
    before, teacher = _weights(pruned), pruning.denoiser_of(base)
    held_out = [(p, 100 + k) for k, p in enumerate(PROMPTS)]  # seeds never trained on
    error_before = recovery.distillation_error(pruned, teacher, held_out, FLUX_SAMPLING)
    info = recover(pruned, teacher, PROMPTS, FLUX_SAMPLING, _cfg(mode=mode, steps=12))
    after = _weights(pruned)
    error_after = recovery.distillation_error(pruned, teacher, held_out, FLUX_SAMPLING)
    assert error_after < 0.7 * error_before, (error_before, error_after)
    # same tensors, same shapes (LoRA merged away), different values; nothing left trainable that was not
    assert after.keys() == before.keys() and all(after[k].shape == before[k].shape for k in before)
    assert any(not torch.equal(after[k], before[k]) for k in before)
    den = pruning.denoiser_of(pruned)
    assert not any("lora" in n for n, _ in den.named_modules())
    assert all(type(m) is torch.nn.Linear for n, m in den.named_modules() if n.endswith("to_q"))
    assert not any(p.requires_grad for p in pruning.denoiser_of(base).parameters() if p.grad is not None)
    assert (
        info["trainable_params"]
        == (sum(p.numel() for p in den.parameters()) if mode == "full" else info["trainable_params"])
        and info["trainable_params"] > 0
    )


def test_merged_lora_computes_what_the_adapted_model_computed():
    _, pruned, _ = _pruned(sdxl_pipeline)
    den = pruning.denoiser_of(pruned)
    cfg = _cfg(rank=2)
    recovery._trainable(den, cfg)
    with torch.no_grad():
        for n, p in den.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # B starts at zero: make the adapters do something
    traj = prepare_trajectory(pruned, PROMPTS[0], 3, steps=3, guidance=5.0, height=16, width=16)
    with torch.no_grad():
        adapted = pruning.trajectory.run(traj, den)
        assert recovery.merge_lora(den) == len(recovery.lora_targets(den, "blocks")) > 0
        merged = pruning.trajectory.run(traj, den)
    assert torch.allclose(adapted, merged, atol=1e-5), (adapted - merged).abs().max()


def test_teacher_trajectories_record_each_steps_input_and_prediction():
    base = flux_pipeline()
    den = pruning.denoiser_of(base)
    (sample,) = recovery.teacher_trajectories(base, den, [(PROMPTS[0], 5)], FLUX_SAMPLING)
    assert len(sample.latents) == FLUX_SAMPLING["steps"] + 1 and len(sample.targets) == FLUX_SAMPLING["steps"]
    sig = sample.traj.sigmas.cpu()
    for i, d in enumerate(sample.targets):  # Euler: x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i
        assert torch.allclose(sample.latents[i + 1], sample.latents[i] + (sig[i + 1] - sig[i]) * d, atol=1e-5)
    with torch.no_grad():
        final = pruning.trajectory.run(prepare_trajectory(base, PROMPTS[0], 5, **FLUX_SAMPLING), den)
    assert torch.equal(sample.latents[-1], final.cpu())


@pytest.mark.parametrize("make", [flux_pipeline, sdxl_pipeline])
def test_batched_teacher_trajectories_are_each_samples_own(make):
    base = make()
    den = pruning.denoiser_of(base)
    sampling = FLUX_SAMPLING if make is flux_pipeline else SDXL_SAMPLING
    samples = pruning.pairs(PROMPTS[:2], seeds=[5, 6])  # one prompt with two seeds: encoded once
    batched = recovery.teacher_trajectories(base, den, samples, sampling, batch=3)
    alone = recovery.teacher_trajectories(base, den, samples, sampling, batch=1)
    assert len(batched) == len(alone) == 4
    for b, a in zip(batched, alone, strict=True):
        for xb, xa in zip(b.latents + b.targets, a.latents + a.targets, strict=True):
            assert xb.shape == xa.shape and torch.allclose(xb, xa, atol=1e-5)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_an_interrupted_recovery_resumes_to_the_same_weights(mode, tmp_path, monkeypatch):
    base, first, _ = _pruned()
    second = copy.deepcopy(first)
    teacher = pruning.denoiser_of(base)
    cfg = _cfg(mode=mode, checkpoint_every=2, objective="both")
    recover(first, teacher, PROMPTS, FLUX_SAMPLING, cfg, tmp_path / "straight")

    real = recovery._timestep_loss

    def interrupted(data, student, cfg, step, weight):
        if step == 3:
            raise KeyboardInterrupt
        return real(data, student, cfg, step, weight)

    monkeypatch.setattr(recovery, "_timestep_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        recover(copy.deepcopy(second), teacher, PROMPTS, FLUX_SAMPLING, cfg, tmp_path / "resumed")
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["position"] == 2 and len(state["curve"]) == 2
    monkeypatch.setattr(recovery, "_timestep_loss", real)
    info = recover(second, teacher, PROMPTS, FLUX_SAMPLING, cfg, tmp_path / "resumed")
    assert info["resumed_from"] == 2 and len(info["curve"]) == cfg.steps
    a, b = _weights(first), _weights(second)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # a finished checkpoint only reloads: same weights again, no training step
    third = copy.deepcopy(_pruned()[1])
    again = recover(third, teacher, PROMPTS, FLUX_SAMPLING, cfg, tmp_path / "straight")
    assert again["resumed_from"] == cfg.steps
    assert all(torch.allclose(a[k], v, atol=1e-6) for k, v in _weights(third).items())
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))


def test_a_non_finite_loss_stops_recovery_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    base, pruned, _ = _pruned()
    real = recovery._timestep_loss

    def poisoned(data, student, cfg, step, weight):
        return float("nan") if step == 4 else real(data, student, cfg, step, weight)

    monkeypatch.setattr(recovery, "_timestep_loss", poisoned)
    with pytest.raises(RecoveryDiverged, match=r"step 4: normalized loss nan.*last good checkpoint kept in"):
        recover(pruned, pruning.denoiser_of(base), PROMPTS, FLUX_SAMPLING, _cfg(checkpoint_every=3), tmp_path)
    assert json.loads((tmp_path / "state.json").read_text())["position"] == 3
    assert isinstance(RecoveryDiverged("x"), pruning.TrainingDiverged)
    assert not any("lora" in n for n, _ in pruning.denoiser_of(pruned).named_modules())  # merged even so


def test_a_checkpoint_of_another_setup_is_refused(tmp_path):
    base, pruned, _ = _pruned()
    teacher = pruning.denoiser_of(base)
    recover(copy.deepcopy(pruned), teacher, PROMPTS, FLUX_SAMPLING, _cfg(steps=2), tmp_path)
    with pytest.raises(ValueError, match="different recovery setup"):
        recover(pruned, teacher, PROMPTS, FLUX_SAMPLING, _cfg(steps=2, lr=1e-4), tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "qlora", "mode must be one of lora, full; got 'qlora'"),
        ("objective", "eps", "objective must be one of timesteps, final-latent, both"),
        ("modules", "convs", "modules must be one of blocks, attention, ffn"),
        ("steps", 0, "steps must be a positive integer; got 0"),
        ("lr", -1.0, "lr must be positive"),
    ],
)
def test_bad_options_name_the_field_the_value_and_what_is_allowed(field, value, message):
    with pytest.raises(ValueError, match=message):
        RecoveryConfig(**{field: value})


def test_lora_module_choices_pick_the_blocks_linears():
    den = pruning.denoiser_of(flux_pipeline())
    blocks, attn, ffn = (set(recovery.lora_targets(den, m)) for m in ("blocks", "attention", "ffn"))
    assert attn and ffn and attn.isdisjoint(ffn) and attn | ffn < blocks
    assert "transformer_blocks.0.attn.to_add_out" in attn and "single_transformer_blocks.0.proj_mlp" in ffn
    assert "transformer_blocks.0.norm1.linear" in blocks - attn - ffn


def test_a_recovered_saved_model_loads_in_a_fresh_process_and_reproduces_its_images(tmp_path):
    base, pruned, plan = _pruned()

    def image(pipe):
        return pipe(
            PROMPTS[1], generator=torch.Generator().manual_seed(11), output_type="pt", **FLUX_CALL
        ).images

    unrecovered = image(pruned)
    recover(pruned, pruning.denoiser_of(base), PROMPTS, FLUX_SAMPLING, _cfg(steps=8))
    recovered = image(pruned)
    assert (recovered - unrecovered).abs().max() > 1e-4  # recovery changed what the model draws
    torch.save(recovered, tmp_path / "expected.pt")
    pruning.save(pruned, plan, tmp_path / "recovered", copy_components=True)
    out = fresh_python(
        f"""
        import torch, pruning
        from diffusers import DiffusionPipeline
        pipe = pruning.load("recovered")
        pipe.set_progress_bar_config(disable=True)
        image = pipe({PROMPTS[1]!r}, generator=torch.Generator().manual_seed(11), output_type="pt", **{FLUX_CALL!r}).images
        stock = DiffusionPipeline.from_pretrained("recovered")
        stock.set_progress_bar_config(disable=True)
        again = stock({PROMPTS[1]!r}, generator=torch.Generator().manual_seed(11), output_type="pt", **{FLUX_CALL!r}).images
        ref = torch.load("expected.pt", weights_only=True)
        print("maxdiff", (image - ref).abs().max().item(), (again - ref).abs().max().item())
        print("lora", any("lora" in k for k in pipe.transformer.state_dict()))
    """,
        tmp_path,
    )
    diffs = [float(x) for x in out.split("maxdiff ")[1].split()[:2]]
    assert max(diffs) < 1e-5, out
    assert "lora False" in out, out
