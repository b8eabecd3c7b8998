"""Inference options (attention kernel, channels-last, torch.compile) on tiny base and pruned denoisers."""

import copy

import pytest
import torch
from tiny import flux_pipeline, sdxl_pipeline

import pruning
from pruning.architectures import prepare_trajectory
from pruning.inference import InferenceOptions, apply_inference_options, graph_breaks

PROMPTS = {"sdxl": {}, "flux": {"max_sequence_length": 8}}


@pytest.fixture(scope="module", params=["sdxl", "flux"])
def case(request):
    """(name, pipeline factory, trajectory) with one emptied attention module and one emptied FFN when pruned."""
    pipe = sdxl_pipeline() if request.param == "sdxl" else flux_pipeline()
    traj = prepare_trajectory(
        pipe, "a digit", 0, steps=2, guidance=3.5, height=16, width=16, **PROMPTS[request.param]
    )

    def build(pruned: bool):
        p = copy.deepcopy(pipe)
        if pruned:
            den = pruning.denoiser_of(p)
            groups = pruning.find_groups(den)
            plan = pruning.plan(den, pruning.Scores("random", pruning.random_scores(groups, 1)), 0.3, align=8)
            plan.modules[next(g.name for g in groups if g.kind == "heads")].kept = []
            plan.modules[next(g.name for g in groups if g.kind == "ffn")].kept = []
            pruning.apply(p, plan)
        return p

    return request.param, build, traj


def _step(traj, den):
    with torch.no_grad():
        return traj.step(den, traj.latents, 0)


def test_bad_options_name_the_field_and_what_is_allowed():
    with pytest.raises(ValueError, match="attention: got 'flash'; allowed: sdpa, math"):
        InferenceOptions(attention="flash")
    with pytest.raises(ValueError, match="channels_last: got True"):
        InferenceOptions(channels_last=True)
    with pytest.raises(ValueError, match="compile: got 'fast'; allowed: default, reduce-overhead"):
        InferenceOptions(compile="fast")
    with pytest.raises(ValueError, match="fullgraph: needs compile"):
        InferenceOptions(fullgraph=True)


def test_attention_and_memory_format_change_speed_not_results(case):
    name, build, traj = case
    pipe = build(pruned=True)
    den = pruning.denoiser_of(pipe)
    reference = _step(traj, den)
    record = apply_inference_options(den, InferenceOptions(attention="math", channels_last="on"))
    assert record["attention"] == "math" and record["compile"] is None
    if name == "sdxl":
        assert record["attention_impl"] == "AttnProcessor" and record["channels_last_applied"]
        assert {type(p).__name__ for p in den.attn_processors.values()} == {"AttnProcessor"}
        assert den.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    else:
        assert "_native_math" in record["attention_impl"] and not record["channels_last_applied"]
        backends = {str(m.processor._attention_backend) for m in den.modules() if hasattr(m, "processor")}
        assert backends == {"AttentionBackendName._NATIVE_MATH"}
    torch.testing.assert_close(_step(traj, den), reference, atol=1e-5, rtol=1e-4)
    record = apply_inference_options(den, InferenceOptions())  # sdpa; channels-last 'auto' is off on the CPU
    assert record["channels_last_applied"] is False
    if name == "sdxl":
        assert record["attention_impl"] == "AttnProcessor2_0"
        assert den.conv_in.weight.is_contiguous()
    torch.testing.assert_close(_step(traj, den), reference, atol=1e-5, rtol=1e-4)


def test_pruned_denoiser_traces_as_one_graph_without_breaks(case):
    _, build, traj = case
    den = pruning.denoiser_of(build(pruned=True))
    assert any(isinstance(m, pruning.targets.ConstantModule) for m in den.modules())
    found = graph_breaks(lambda x: traj.step(den, x, 0), traj.latents)
    assert found == {"graphs": 1, "graph_breaks": 0, "reasons": []}


@pytest.mark.slow  # inductor compiles C++ for the CPU: 0.5 (FLUX) to 5 (SDXL) minutes on 2 busy cores
def test_pruned_denoiser_compiles_fullgraph_and_matches_eager(case):
    _, build, traj = case
    den = pruning.denoiser_of(build(pruned=True))
    reference = _step(traj, den)
    torch._dynamo.reset()
    record = apply_inference_options(den, InferenceOptions(compile="default", fullgraph=True))
    assert record["compile"] == "default" and record["fullgraph"] is True
    torch.testing.assert_close(_step(traj, den), reference, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(
        _step(traj, den), reference, atol=1e-4, rtol=1e-3
    )  # cached graph, no recompile
    torch._dynamo.reset()
