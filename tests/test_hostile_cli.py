"""Hostile command-line arguments and unrunnable suites: exit code 2, a message naming the option or the
suite field and the value, no traceback, and nothing written where it does not belong. ``run`` checks
devices, the output folder and the store before any work (no model is loaded in these tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core.store import Store
from reports.synthetic import make_record

SUITE = """name: t
models: [{name: digits-sdxl, device: DEVICE}]
methods: [{name: magnitude, ratios: [0.2]}]
energy: {country: FRA, idle_baseline_s: 0}
outputs: {dir: OUT, report: false}
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder with a store (run r1, release v1), a plain file and hostile thresholds files."""
    monkeypatch.chdir(tmp_path)
    with Store(tmp_path / "s.sqlite") as store:
        store.put(make_record("m", "base", 0.0, run_id="r1"))
        store.put(make_record("m", "magnitude", 0.2, run_id="r1"))
        store.tag("v1", run_id="r1")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "utf16.yaml").write_bytes("fid: {max_increase: 1}\n".encode("utf-16"))
    (tmp_path / "negative.yaml").write_text("fid: {max_increase: -1}\n")
    (tmp_path / "unknown.yaml").write_text("fidd: {max_increase: 1}\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "bomb.yaml").write_text(
        "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
    )
    return tmp_path


STORE = ["--store", "s.sqlite"]
# (id, arguments, what stderr must contain)
BAD_CALLS = [
    ("export-to-sys", ["export", "/sys/x.csv", *STORE], ["OUT", "/sys"]),
    ("export-under-a-file", ["export", "afile/x.csv", *STORE], ["OUT", "afile exists and is not a folder"]),
    ("export-to-a-folder", ["export", ".", *STORE], ["OUT", "is a directory"]),
    ("export-unknown-suffix", ["export", "x.xlsx", *STORE], ["cannot tell the format from 'x.xlsx'"]),
    ("export-unknown-tag", ["export", "o.csv", "--tag", "nope", *STORE], ["--tag", "'nope'", "known: v1"]),
    ("export-unknown-status", ["export", "o.csv", "--status", "weird", *STORE], ["--status", "'weird'"]),
    ("report-under-a-file", ["report", "--out", "afile/rep", *STORE], ["--out", "afile is a file"]),
    ("report-into-proc", ["report", "--out", "/proc/rep", *STORE], ["--out", "/proc/rep"]),
    ("report-unknown-run", ["report", "--run-id", "zz", *STORE], ["--run-id", "'zz'"]),
    (
        "thresholds-binary",
        ["check", "--baseline", "v1", "--thresholds", "binary.yaml", *STORE],
        ["--thresholds", "binary.yaml", "binary file"],
    ),
    ("thresholds-utf16", ["check", "--baseline", "v1", "--thresholds", "utf16.yaml", *STORE], ["UTF-16"]),
    ("thresholds-bomb", ["check", "--baseline", "v1", "--thresholds", "bomb.yaml", *STORE], ["alias bomb"]),
    (
        "thresholds-negative",
        ["check", "--baseline", "v1", "--thresholds", "negative.yaml", *STORE],
        ["negative.yaml", "fid"],
    ),
    (
        "thresholds-unknown-metric",
        ["check", "--baseline", "v1", "--thresholds", "unknown.yaml", *STORE],
        ["fidd"],
    ),
    ("thresholds-list", ["check", "--baseline", "v1", "--thresholds", "list.yaml", *STORE], ["list.yaml"]),
    ("thresholds-missing", ["check", "--baseline", "v1", "--thresholds", "nope.yaml", *STORE], ["nope.yaml"]),
    (
        "junit-under-a-file",
        ["check", "--baseline", "v1", "--junit", "afile/j.xml", *STORE],
        ["--junit", "afile"],
    ),
    ("check-unknown-baseline", ["check", "--baseline", "nope", *STORE], ["--baseline", "'nope'", "Tags: v1"]),
    (
        "check-two-candidates",
        ["check", "--baseline", "v1", "--candidate", "v1", "--run-id", "r1", *STORE],
        ["not both"],
    ),
    ("compare-unknown", ["compare", "nope", "v1", *STORE], ["'nope' is not a release tag"]),
    ("compare-unknown-metric", ["compare", "r1", "v1", "--metric", "fdi", *STORE], ["--metric", "'fdi'"]),
    ("tag-blank-name", ["tag", "  ", "--run-id", "r1", *STORE], ["non-empty string"]),
    ("tag-existing", ["tag", "v1", "--run-id", "r1", *STORE], ["'v1' already exists"]),
    ("tag-unknown-record", ["tag", "v3", "--record", "zzz", *STORE], ["--record", "zzz"]),
    ("history-limit-zero", ["history", "--limit", "0", *STORE], ["--limit"]),
    ("store-missing", ["history", "--store", "missing.sqlite"], ["no results store at missing.sqlite"]),
    ("store-is-a-folder", ["history", "--store", "."], ["--store", "is a directory"]),
    ("validate-missing", ["validate", "nope.yaml"], ["suite file not found", "nope.yaml"]),
    ("validate-a-folder", ["validate", "."], ["is not a suite file"]),
    ("validate-a-device", ["validate", "/dev/zero"], ["/dev/zero", "is not a suite file"]),
    ("validate-unknown-name", ["validate", "digitz"], ["Unknown suite 'digitz'", "digits"]),
    ("run-unknown-model", ["run", "digits", "--only", "nope", "--dry-run"], ["'nope'", "digits-sdxl"]),
    ("run-out-is-a-file", ["run", "digits", "--out", "afile"], ["--out", "afile"]),
    ("run-out-in-proc", ["run", "digits", "--out", "/proc/x/y"], ["--out", "/proc/x/y"]),
    ("prune-out-under-a-file", ["prune", "digits", "--out", "afile/sub"], ["--out", "afile is a file"]),
    ("ls-unknown", ["ls", "nope"], ["'nope' is not one of"]),
    ("zoo-unknown", ["zoo", "train", "nope"], ["Unknown zoo model 'nope'"]),
]


@pytest.mark.parametrize("args,needles", [(a, n) for _, a, n in BAD_CALLS], ids=[i for i, _, _ in BAD_CALLS])
def test_a_bad_call_exits_2_with_the_option_named(work, args, needles):
    before = sorted(p.name for p in work.iterdir())
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in {result.stderr}"
    after = sorted(p.name for p in work.iterdir())
    assert set(after) - set(before) <= {"s.sqlite-wal", "s.sqlite-shm"}, after  # nothing else written


def _suite(tmp: Path, device: str = "auto", out: str = "out", **extra: str) -> Path:
    text = SUITE.replace("DEVICE", device).replace("OUT", out)
    if extra:
        text = text.replace(
            "report: false}", "report: false, " + ", ".join(f"{k}: {v}" for k, v in extra.items()) + "}"
        )
    path = tmp / "suite.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    "out,needle",
    [
        ("afile", "outputs.dir: afile exists and is not a folder"),
        ("afile/sub", "outputs.dir: afile/sub cannot be created: afile is a file"),
        ("/proc/nope/x", "outputs.dir: cannot create the folder /proc/nope/x"),
        ("/sys/kernel/x", "outputs.dir: cannot create the folder /sys/kernel/x"),
    ],
    ids=["file", "under-a-file", "proc", "sys"],
)
@pytest.mark.parametrize("command", ["run", "prune"])
def test_an_unwritable_outputs_dir_is_refused_before_any_work(work, no_cuda, out, needle, command):
    result = CliRunner().invoke(main, [command, str(_suite(work, out=out))])
    assert result.exit_code == 2, result.output
    assert "Cannot run suite" in result.stderr and needle in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["run", "prune"])
def test_a_device_this_machine_lacks_is_refused_at_run_naming_the_field(work, no_cuda, command):
    suite = _suite(work, device="cuda")
    assert CliRunner().invoke(main, ["validate", str(suite)]).exit_code == 0  # validate may run elsewhere
    result = CliRunner().invoke(main, [command, str(suite)])
    assert result.exit_code == 2, result.output
    for needle in ("models[0].device", "'cuda'", "digits-sdxl", "devices found: cpu"):
        assert needle in result.stderr, result.stderr
    assert not (work / "out").exists()  # refused before anything was created


def test_the_device_field_is_named_by_its_place_in_the_file_with_only(work, no_cuda):
    suite = work / "two.yaml"
    suite.write_text(
        SUITE.replace(
            "models: [{name: digits-sdxl, device: DEVICE}]",
            "models: [digits-flux, {name: digits-sdxl, device: cuda}]",
        ).replace("OUT", "out")
    )
    result = CliRunner().invoke(main, ["run", str(suite), "--only", "digits-sdxl"])
    assert result.exit_code == 2 and "models[1].device" in result.stderr, result.stderr


def test_a_run_refuses_a_store_another_run_holds(work, no_cuda):
    suite = _suite(work, out=str(work / "out"))
    store_path = work / "out" / "store.sqlite"
    with Store(store_path) as store, store.run_lock("other-suite"):
        result = CliRunner().invoke(main, ["run", str(suite)])
    assert result.exit_code == 2, result.output
    assert (
        "another run" in result.stderr and f"pid {os.getpid()}" in result.stderr and "--wait" in result.stderr
    )
    assert len(Store(store_path, readonly=True)) == 0
