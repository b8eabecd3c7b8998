"""Tampered plans and pruned-model directories: every field is checked, and the error names the file, the
field and the value (never a bare KeyError/TypeError/JSONDecodeError). Most cases fail before any model is
built; one tiny pruned SDXL is saved once for the directory cases."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import pruning
from pruning.plans import PlanError, PruningPlan

MODULE = {"kind": "heads", "total": 4, "kept": [0, 2, 3], "params_per_unit": 10, "params_shared": 5}
PLAN = {
    "version": 1,
    "method": "magnitude",
    "ratio": 0.25,
    "target": "params",
    "ranking": "global",
    "architecture": "sdxl",
    "total_params": 1000,
    "info": {},
    "modules": {"down.0.attn1": MODULE},
}


def _plan(**changes) -> dict:
    d = copy.deepcopy(PLAN)
    for key, value in changes.items():
        if key.startswith("m_"):
            if value is _DROP:
                del d["modules"]["down.0.attn1"][key[2:]]
            else:
                d["modules"]["down.0.attn1"][key[2:]] = value
        elif value is _DROP:
            del d[key]
        else:
            d[key] = value
    return d


_DROP = object()

# (id, plan dict, what the message names)
BAD_PLANS = [
    ("kept-strings", _plan(m_kept=["0", "2"]), ["modules['down.0.attn1'].kept[0] = '0'", "integer"]),
    ("kept-null", _plan(m_kept=None), ["kept = None", "list of unit indices"]),
    ("kept-null-entry", _plan(m_kept=[0, None]), ["kept[1] = None"]),
    ("kept-out-of-range", _plan(m_kept=[0, 4]), ["kept[1] = 4", "0..3"]),
    ("kept-negative", _plan(m_kept=[-1, 0]), ["kept[0] = -1"]),
    ("kept-float", _plan(m_kept=[0, 1.0]), ["kept[1] = 1.0"]),
    ("kept-bool", _plan(m_kept=[True]), ["kept[0] = True"]),
    ("kept-duplicates", _plan(m_kept=[0, 0, 1]), ["distinct unit indices"]),
    ("kept-unsorted", _plan(m_kept=[2, 0]), ["increasing order"]),
    ("kept-missing", _plan(m_kept=_DROP), ["kept is missing"]),
    ("total-string", _plan(m_total="4"), ["total = '4'", "non-negative integer"]),
    ("total-negative", _plan(m_total=-4), ["total = -4"]),
    ("kind-unknown", _plan(m_kind="conv"), ["kind = 'conv'", "heads or ffn"]),
    ("params-null", _plan(m_params_per_unit=None), ["params_per_unit = None"]),
    ("module-unknown-field", _plan(m_extra=1), ["unknown field 'extra'"]),
    ("module-not-object", _plan(modules={"x": [1, 2]}), ["modules['x'] must be an object"]),
    ("modules-missing", _plan(modules=_DROP), ["modules is missing"]),
    ("modules-empty", _plan(modules={}), ["modules = {}"]),
    ("modules-list", _plan(modules=[MODULE]), ["modules = ["]),
    ("method-missing", _plan(method=_DROP), ["method is missing"]),
    ("method-number", _plan(method=3), ["method = 3"]),
    ("ratio-string", _plan(ratio="0.2"), ["ratio = '0.2'", "[0, 1)"]),
    ("ratio-one", _plan(ratio=1.0), ["ratio = 1.0"]),
    ("ratio-null", _plan(ratio=None), ["ratio = None"]),
    ("target-unknown", _plan(target="flops"), ["target = 'flops'", "params or units"]),
    ("ranking-unknown", _plan(ranking="local"), ["ranking = 'local'"]),
    ("total-params-zero", _plan(total_params=0), ["total_params = 0"]),
    ("info-list", _plan(info=[]), ["info = []"]),
    ("version-missing", _plan(version=_DROP), ["plan version None"]),
    ("version-future", _plan(version=2), ["plan version 2"]),
    (
        "no-prunable-units",
        _plan(m_total=0, m_kept=[], m_params_per_unit=0, m_params_shared=0),
        ["no prunable"],
    ),
]


@pytest.mark.parametrize("data,needles", [(d, n) for _, d, n in BAD_PLANS], ids=[i for i, _, _ in BAD_PLANS])
def test_a_malformed_plan_names_the_file_field_and_value(tmp_path, data, needles):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError) as err:
        PruningPlan.load(path)
    assert str(path) in str(err.value)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON (Expecting property name"),
        (b"[1, 2]", "holds a JSON object, not a list"),
        (b"null", "not a NoneType"),
        ('{"a": "caf\xe9"}'.encode("latin-1"), "not UTF-8"),
        (json.dumps(PLAN).encode("utf-16"), "not UTF-8"),
        (b"\x00\x01\x02" * 100, "not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ],
    ids=["empty", "not-json", "list", "null", "latin1", "utf16", "binary", "deep"],
)
def test_a_plan_file_that_is_not_a_json_object_is_refused(tmp_path, content, needle):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(PlanError, match="plan") as err:
        PruningPlan.load(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_a_missing_plan_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="plan file not found"):
        PruningPlan.load(tmp_path / "nope.json")


def test_a_valid_plan_round_trips(tmp_path):
    plan = PruningPlan.from_dict(PLAN)
    again = PruningPlan.load(plan.save(tmp_path / "plan.json"))
    assert again.to_dict() == plan.to_dict() and again.modules["down.0.attn1"].kept == [0, 2, 3]


# -- pruned-model directories ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    import tiny

    pipe = tiny.sdxl_pipeline()
    scores = pruning.score(pipe, "magnitude")
    plan = pruning.plan(pipe, scores, 0.3)
    path = tmp_path_factory.mktemp("pruned") / "model"
    pruning.save(pruning.apply(pipe, plan), plan, path, copy_components=True)
    return path


def _copy(saved: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / "pruned.json").read_text())
    for key, value in changes.items():
        if value is _DROP:
            del meta[key]
        else:
            meta[key] = value
    (path / "pruned.json").write_text(json.dumps(meta))


def _edit_config(path: Path, fn) -> None:
    file = path / "unet" / "config.json"
    config = json.loads(file.read_text())
    fn(config)
    file.write_text(json.dumps(config))


BAD_META = [
    ("denoiser-escape", {"denoiser": "../../etc"}, "denoiser = '../../etc'"),
    ("denoiser-missing", {"denoiser": _DROP}, "denoiser is missing"),
    ("denoiser-class-not-pruned", {"denoiser_class": "UNet2DConditionModel"}, "is not one of PrunedUNet2D"),
    ("denoiser-class-attribute", {"denoiser_class": "__version__"}, "denoiser_class '__version__'"),
    ("denoiser-class-expression", {"denoiser_class": "os.system"}, "denoiser_class = 'os.system'"),
    ("denoiser-class-missing", {"denoiser_class": _DROP}, "denoiser_class is missing"),
    ("pipeline-class-missing", {"pipeline_class": _DROP}, "pipeline_class is missing"),
    ("components-as-text", {"components_included": "yes"}, "components_included = 'yes'"),
    ("components-missing", {"components_included": _DROP}, "components_included is missing"),
    ("base-number", {"base": 5}, "base = 5"),
    ("sha256-list", {"sha256": ["a"]}, "sha256 = ['a']"),
    ("sha256-not-a-digest", {"sha256": {"plan.json": 3}}, "sha256['plan.json'] = 3"),
    ("sha256-escape", {"sha256": {"../x.safetensors": "0" * 64}}, "'../x.safetensors'"),
    ("format-unknown", {"format": "something/9"}, "unsupported format 'something/9'"),
    ("format-old", {"format": "ecodiff-bench-pruned/1"}, "saved by an older version"),
]


@pytest.mark.parametrize("changes,needle", [(c, n) for _, c, n in BAD_META], ids=[i for i, _, _ in BAD_META])
def test_tampered_metadata_is_refused_naming_the_field(saved, tmp_path, changes, needle):
    path = _copy(saved, tmp_path)
    _edit_meta(path, **changes)
    with pytest.raises(ValueError) as err:
        pruning.load_denoiser(path)
    assert str(path / "pruned.json") in str(err.value) and needle in str(err.value), str(err.value)


def test_a_by_reference_model_naming_no_pipeline_class_is_refused(saved, tmp_path):
    path = _copy(saved, tmp_path)
    _edit_meta(path, components_included=False, base="org/model", pipeline_class="UNet2DConditionModel")
    with pytest.raises(PlanError, match="pipeline_class 'UNet2DConditionModel' is not a diffusers pipeline"):
        pruning.load(path, verify_files=False)


# (id, file, bytes written over it or a change to the denoiser config, what the message says)
TAMPERED = [
    ("meta-not-json", "pruned.json", b"{broken", "not valid JSON"),
    ("meta-list", "pruned.json", b"[]", "holds a JSON object"),
    ("meta-utf16", "pruned.json", '{"format": 1}'.encode("utf-16"), "not UTF-8"),
    ("plan-empty", "plan.json", b"", "sha256 mismatch"),
    ("plan-edited", "plan.json", b'{"version": 1, "modules": {}}', "sha256 mismatch"),
    ("config-not-json", "unet/config.json", b"nope", "not valid JSON"),
    ("config-no-hashes", "unet/config.json", b'{"block_out_channels": "wide"}', "no sha256 recorded"),
    (
        "config-units-text",
        "unet/config.json",
        lambda c: c["pruned_units"].update({next(iter(c["pruned_units"])): "abc"}),
        "expected kept indices like",
    ),
    (
        "config-units-range",
        "unet/config.json",
        lambda c: c["pruned_units"].update({next(iter(c["pruned_units"])): "0-9999"}),
        "expected distinct indices in 0..",
    ),
    (
        "config-units-null",
        "unet/config.json",
        lambda c: c["pruned_units"].update({next(iter(c["pruned_units"])): None}),
        "expected kept indices like",
    ),
    (
        "config-units-unknown-group",
        "unet/config.json",
        lambda c: c["pruned_units"].update({"not.a.group": "0"}),
        "does not have",
    ),
    (
        "weights-garbage",
        "unet/diffusion_pytorch_model.safetensors",
        b"\x08" + b"\x00" * 7 + b"{}",
        "sha256 mismatch",
    ),
    ("weights-empty", "unet/diffusion_pytorch_model.safetensors", b"", "sha256 mismatch"),
    ("weights-stray", "unet/extra.safetensors", b"x", "not recorded"),
]


@pytest.mark.parametrize(
    "target,change,needle", [(t, c, n) for _, t, c, n in TAMPERED], ids=[i for i, _, _, _ in TAMPERED]
)
def test_tampered_files_of_a_pruned_model_are_named(saved, tmp_path, target, change, needle):
    path = _copy(saved, tmp_path)
    if callable(change):
        _edit_config(path, change)
    else:
        (path / target).write_bytes(change)
    with pytest.raises(ValueError) as err:
        pruning.load(path)
    text = str(err.value)
    assert needle in text and (str(path / target) in text or str(path / "pruned.json") in text), text


def test_tampered_units_are_named_even_when_hashes_are_not_checked(saved, tmp_path):
    path = _copy(saved, tmp_path)
    _edit_config(path, lambda c: c["pruned_units"].update({next(iter(c["pruned_units"])): "7,3,3"}))
    with pytest.raises(PlanError) as err:
        pruning.load_denoiser(path, verify_files=False)
    assert str(path / "unet" / "config.json") in str(err.value) and "pruned_units[" in str(err.value)


def test_a_folder_without_metadata_is_not_a_pruned_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a saved pruned model"):
        pruning.load(tmp_path)


def test_the_untampered_model_still_loads(saved):
    assert pruning.load_denoiser(saved) is not None
