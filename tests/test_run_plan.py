"""The run plan: record ids of the shipped suites pinned, every output path from one layout, the smoked
idle baseline, and a suite's model reference (revision, variant) reaching diffusers' from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ecodiff_bench.core.hashing import CACHE_DIGITS, MODEL_DIGITS, RECORD_DIGITS
from ecodiff_bench.models import HubRef, LocalRef, RandomInitRef, ZooRef
from ecodiff_bench.suite import SUITES_DIR, expand, load_suite, validate_suite

# Ids computed before the run plan existed: a change here orphans every stored record and cache.
PINNED = {
    ("digits", "digits-sdxl-turbo", "base", 0.0): {
        "record_id": "8565360b355591640a95fc290f7ea59c4c3b812f767ea430c4db8b1481af6919",
    },
    ("digits", "digits-sdxl-turbo", "ecodiff", 0.2): {
        "record_id": "ff71c395f4b4f2a3a58a6004cd61fc96b3e59f937c56e40e78a0611e2a60aa17",
        "score_key": "f8501e5757b52e25d69e0df51dfd28cd57a81b44448b401d1497d6bf59c51e5a",
        "plan_key": "71ebf2a3d959732f43639d3acc6252eaa597c5f92c485eff16b60bfe523b3e27",
    },
    ("sdxl", "sdxl", "base", 0.0): {  # a hub model: its unset variant stays out of the id
        "record_id": "e693bf332f72727587b02e11d12c327ec8cc15f071e221f300875b57ec04163e",
    },
    ("digits-recovery", "digits-sdxl", "ecodiff+recovery", 0.4): {
        "record_id": "41bf07d04701dfeffde52ca2dfc41896b20ee970f85e9b363a55c1d6070072c5",
        "unrecovered_id": "a0e3ae59bafa666ea2fbd81531245d019a9d9156062687d1025d539b37c6bebd",
        "recovery_key": "3d278199e623c52f495a7b85f32108ced1ddd62b4f3a254acc49bdf02f81182d",
    },
}


@pytest.mark.parametrize("where", list(PINNED), ids=lambda w: "/".join(map(str, w)))
def test_shipped_suites_keep_their_record_ids(where):
    suite, model, method, ratio = where
    (spec,) = [
        s
        for s in expand(load_suite(suite)).specs
        if (s.model, s.record_method, s.ratio) == (model, method, ratio)
    ]
    assert {k: getattr(spec, k) for k in PINNED[where]} == PINNED[where]


def _suite(**extra) -> dict:
    return {
        "name": "p",
        "models": ["digits-sdxl"],
        "methods": [{"name": "magnitude", "ratios": [0.2], "recovery": {"steps": 2}}],
        "calibration": {"prompts": "digits", "count": 2},
        "energy": {"country": "FRA", "idle_baseline_s": 7.0},
        **extra,
    }


def test_smoke_plan_carries_the_smoked_idle_baseline_and_settings():
    suite = validate_suite(_suite(smoke={"idle_baseline_s": 0.5, "samples": 3}))
    full, smoke = expand(suite), expand(suite, smoke=True)
    assert (full.idle_baseline_s, smoke.idle_baseline_s) == (7.0, 0.5)
    assert all(s.energy.idle_baseline_s == 0.5 and s.evaluation.samples == 3 for s in smoke.specs)
    assert smoke.provenance["smoke"] is True and smoke.suite_hash == full.suite_hash == suite.content_hash()


def test_the_runner_measures_the_smoked_idle_baseline(monkeypatch):
    from ecodiff_bench.run import distributed, runner

    class Monitor:
        idle: list = []

        def measure_idle(self, seconds):
            self.idle.append(seconds)

    monkeypatch.setattr(distributed, "energy_monitor", Monitor)
    monkeypatch.setattr(runner, "collect_provenance", lambda extra: dict(extra))
    plan = expand(validate_suite(_suite(smoke={"idle_baseline_s": 0.25})), smoke=True)
    ctx = runner._context(plan, None)
    assert Monitor.idle == [0.25]  # the unsmoked suite says 7 s
    assert ctx.provenance["smoke"] is True and ctx.provenance["suite_file"] is None


def test_dry_run_smoke_shrinks_the_suite_once(monkeypatch):
    import importlib

    from ecodiff_bench.cli import main

    expand_module = importlib.import_module(
        "ecodiff_bench.suite.expand"
    )  # the package's expand is the function
    calls = []
    real = expand_module.validate_suite
    monkeypatch.setattr(expand_module, "validate_suite", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = CliRunner().invoke(main, ["run", "digits", "--dry-run", "--smoke"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and "idle baseline 0.5 s" in result.output


def test_every_path_of_a_run_comes_from_its_layout(tmp_path):
    plan = expand(validate_suite(_suite(outputs={"dir": str(tmp_path / "out")})))
    layout = plan.layout
    base, pruned, recovered = plan.specs
    assert (layout.root, layout.store, layout.emissions) == (
        tmp_path / "out",
        tmp_path / "out" / "store.sqlite",
        tmp_path / "out" / "emissions.csv",
    )
    assert layout.scores(pruned) == layout.cache / "scores" / pruned.score_key[:CACHE_DIGITS]
    assert layout.recovery(recovered) == layout.cache / "recovery" / recovered.recovery_key[:CACHE_DIGITS]
    assert layout.base_images(base).name == base.record_id[:RECORD_DIGITS] + ".safetensors"
    assert layout.artifacts(pruned).name == pruned.record_id[:RECORD_DIGITS]
    # one name per thing: a recovered model's folder says what its record says
    assert layout.model_dir(recovered).name == (
        f"digits-sdxl-magnitude+recovery-20-{recovered.record_id[:MODEL_DIGITS]}"
    )
    other = expand(validate_suite(_suite(outputs={"dir": "a", "store": str(tmp_path / "s.sqlite")})), out="b")
    assert (other.layout.root, other.layout.root_field) == (Path("b"), "--out")
    assert (other.layout.store, other.layout.store_field) == (tmp_path / "s.sqlite", "outputs.store")
    assert other.layout.emissions == tmp_path / "emissions.csv"


def test_a_suite_entry_gives_the_loader_its_model_ref():
    suite = validate_suite(
        _suite(
            models=[
                "digits-sdxl",
                {"name": "sdxl", "revision": "abc", "variant": "fp16"},
                {"name": "flux-dev", "source": "random-init"},
                {"name": "sdxl", "label": "mine", "source": "./pipe", "variant": "bf16"},
            ],
            methods=[],
        )
    )
    refs = [m.ref for m in suite.models]
    assert refs == [
        ZooRef(name="digits-sdxl"),
        HubRef(repo="stabilityai/stable-diffusion-xl-base-1.0", revision="abc", variant="fp16"),
        RandomInitRef(),
        LocalRef(path="./pipe", variant="bf16"),
    ]


def test_an_unset_variant_leaves_the_record_id_and_a_set_one_changes_it():
    ids = [
        expand(validate_suite(_suite(models=[model], methods=[]))).specs[0].record_id
        for model in (
            {"name": "sdxl"},
            {"name": "sdxl", "variant": None},
            {"name": "sdxl", "variant": "fp16"},
        )
    ]
    assert ids[0] == ids[1] != ids[2]


def test_a_variant_is_a_plain_name_and_belongs_to_hub_or_local_sources():
    from ecodiff_bench.core.errors import SuiteError

    with pytest.raises(SuiteError, match=r"models\[0\]\.variant"):
        validate_suite(_suite(models=[{"name": "sdxl", "variant": "../x"}], methods=[]))
    with pytest.raises(SuiteError, match=r"models\[0\]\.variant: unknown key.*hub or a local folder"):
        validate_suite(_suite(models=[{"name": "digits-sdxl", "variant": "fp16"}], methods=[]))


def test_a_suite_revision_and_variant_reach_from_pretrained(fake_from_pretrained, monkeypatch):
    from ecodiff_bench.models import loading
    from ecodiff_bench.run import runner

    monkeypatch.setattr(loading, "is_cached", lambda repo, cache_dir=None, revision=None: True)
    model = {"name": "sdxl", "hub_id": "org/sdxl", "revision": "v1", "variant": "fp16", "device": "cpu"}
    (spec,) = expand(validate_suite(_suite(models=[model], methods=[]))).specs
    runner._load(spec)
    ((location, kwargs),) = fake_from_pretrained
    assert (location, kwargs["revision"], kwargs["variant"]) == ("org/sdxl", "v1", "fp16")


def test_shipped_suites_name_where_their_outputs_go():
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        plan = expand(load_suite(path))
        assert plan.layout.store.parent == plan.layout.root or plan.layout.store_field == "outputs.store"
        assert set(plan.positions) == {s.model for s in plan.specs}
