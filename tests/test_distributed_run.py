"""One suite run by `torchrun --nproc_per_node=2` over gloo on the CPU equals the same suite run by one
process: identical EcoDiff logits (to float tolerance), identical plans, equal quality metrics, one store
written once (rank 1 writes nothing: an audit hook records every file it opens for writing), one report.
A recovered variant (trained on rank 0, its weights handed to rank 1) measures the same too.
A failure planted on rank 1 fails that spec on both ranks with rank 1's reason, and the job exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ecodiff_bench.core.store import Store

SUITE = {
    "name": "dist-check",
    "models": [{"name": "digits-sdxl", "device": "cpu", "dtype": "float32"}],
    "methods": [
        {"name": "ecodiff", "ratios": [0.3], "options": {"epochs": 1, "accumulate": 2, "lr": 0.5}},
        # recovered on rank 0 alone; rank 1 takes its weights
        {"name": "magnitude", "ratios": [0.3], "recovery": {"mode": "lora", "steps": 2, "batch": 2}},
    ],
    "calibration": {"prompts": "digits", "count": 4},
    "evaluation": {
        "prompts": "digits",
        "samples": 5,  # uneven shards: 3 + 2
        "seed": 100,
        "metrics": ["frechet_distance", "clip_score", "ssim_vs_base", "psnr_vs_base", "recognisability"],
        "reference": "digits-heldout",
        "feature_extractor": "digits-clip",
        "clip": {"name": "digits-clip"},
    },
    "performance": {"latency": {"warmup": 0, "min_reps": 2, "min_seconds": 0, "max_reps": 2}},
    "energy": {"country": "FRA", "idle_baseline_s": 0},
    "outputs": {"dir": "out", "report": ["md"]},
}

# Imported by every process started with this folder on PYTHONPATH. On ranks other than 0 it records
# each write under OUT (files opened for writing, folders made, renames, removals, SQLite connections);
# with PLANT_FAILURE set, rank 1's magnitude scoring raises.
SITECUSTOMIZE = textwrap.dedent("""
    import atexit, json, os, sys
    rank = int(os.environ.get("RANK", "0"))
    out = os.environ.get("AUDIT_OUT")
    writes = []
    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing:
                writes.append(("open", os.fsdecode(args[0])))
        elif event in ("os.mkdir", "os.rename", "os.remove", "sqlite3.connect") and args:
            writes.append((event, os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""))
    if out and rank != 0:
        sys.addaudithook(audit)
        def dump():
            mine = [w for w in writes if os.path.abspath(w[1]).startswith(os.path.abspath(out))]
            with open(os.path.join(os.environ["AUDIT_LOG"], f"rank{rank}.json"), "w") as f:
                json.dump(mine, f)
        atexit.register(dump)
    if os.environ.get("PLANT_FAILURE") and rank == 1:
        import pruning.methods.simple as simple
        def planted(*args, **kwargs):
            raise RuntimeError("planted failure on rank 1")
        simple.magnitude_scores = planted
""")


def _run(tmp: Path, out: str, nproc: int, *, suite: dict = SUITE, plant: bool = False, timeout=600):
    (tmp / "hooks").mkdir(exist_ok=True)
    (tmp / "hooks" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp / f"{out}-log").mkdir()
    path = tmp / f"{out}.yaml"
    path.write_text(yaml.safe_dump(suite))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp / "hooks"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "ECODIFF_BENCH_DIST_TIMEOUT_S": "120",
        "AUDIT_OUT": str(tmp / out),
        "AUDIT_LOG": str(tmp / f"{out}-log"),
    }
    if plant:
        env["PLANT_FAILURE"] = "1"
    cli = ["-m", "ecodiff_bench", "run", str(path), "--out", str(tmp / out)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, *cli] if nproc > 1 else [sys.executable, *cli]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


LIBRARY_WORKER = textwrap.dedent("""
    import sys, torch
    from safetensors.torch import save_file
    sys.path.insert(0, sys.argv[2])
    import tiny, pruning
    from ecodiff_bench.run import distributed
    world = distributed.init_from_env()
    torch.manual_seed(0)
    pipe = tiny.sdxl_pipeline()
    prompts = ["a handwritten digit one", "a photo of a cat", "a handwritten digit seven"]  # 2 + 1 per rank
    sampling = {"steps": 3, "guidance": 5.0, "height": 32, "width": 32}
    eco = pruning.score(pipe, "ecodiff", prompts, sampling=sampling,
                        options={"epochs": 2, "accumulate": 3, "lr": 0.1, "target_sparsity": 0.3,
                                 "progress": False})
    tay = pruning.score(pipe, "taylor", prompts, sampling=sampling,
                        options={"batch": 3, "timestep_stride": 200, "progress": False})
    if world.writer:
        save_file({**{f"eco.{k}": v for k, v in eco.values.items()},
                   **{f"taylor.{k}": v for k, v in tay.values.items()}}, sys.argv[1])
    distributed.shutdown()
""")


@pytest.mark.slow
def test_the_library_learns_the_same_scores_on_two_processes(tmp_path):
    """EcoDiff logits and Taylor scores of a tiny SDXL pipeline: 2 gloo processes (uneven shards) equal 1."""
    script = tmp_path / "worker.py"
    script.write_text(LIBRARY_WORKER)
    tests = str(Path(__file__).parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for cmd, out in (([sys.executable], "one"), (launcher, "two")):
        proc = subprocess.run(
            [*cmd, str(script), str(tmp_path / f"{out}.safetensors"), tests],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert one.keys() == two.keys() and any(k.startswith("taylor.") for k in one)
    for name in one:
        torch.testing.assert_close(
            two[name], one[name], rtol=1e-4, atol=1e-4 if name.startswith("eco") else 0
        )
    assert max(float(v.abs().max()) for k, v in one.items() if k.startswith("taylor.")) > 0


def test_the_write_audit_sees_writes_under_the_output_folder(tmp_path):
    """The audit the store test relies on does record a non-zero rank's writes (and only those)."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "out"
    code = (
        "import os, sqlite3, pathlib; out = pathlib.Path(os.environ['AUDIT_OUT']); out.mkdir();"
        "(out / 'a.txt').write_text('x'); sqlite3.connect(str(out / 's.sqlite')).close();"
        "(out / 'a.txt').read_text(); pathlib.Path(os.environ['AUDIT_LOG'], 'elsewhere.txt').write_text('y')"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hooks"), "RANK": "1"}
    env.update(AUDIT_OUT=str(out), AUDIT_LOG=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    seen = json.loads((tmp_path / "rank1.json").read_text())
    assert [e for e, _ in seen] == ["os.mkdir", "open", "sqlite3.connect"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    one, _ = _run(tmp, "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two, _ = _run(tmp, "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    return tmp


def _records(out: Path) -> dict[str, dict]:
    with Store(out / "store.sqlite", readonly=True) as store:
        records = store.records()
    assert len({r["record_id"] for r in records}) == len(records) == 4  # base, ecodiff, magnitude(+recovery)
    return {r["method"]: r for r in records}


@pytest.mark.slow
def test_two_processes_learn_the_same_logits_and_plans(runs):
    one = sorted((runs / "one" / "cache" / "scores").glob("*/scores.safetensors"))
    two = sorted((runs / "two" / "cache" / "scores").glob("*/scores.safetensors"))
    assert [p.parent.name for p in one] == [p.parent.name for p in two] and len(one) == 2
    for a, b in zip(one, two, strict=True):
        sa, sb = load_file(a), load_file(b)
        assert sa.keys() == sb.keys()
        for name in sa:  # AdamW steps amplify float-summation differences a little
            torch.testing.assert_close(sa[name], sb[name], rtol=1e-4, atol=1e-3)
    infos = [
        json.loads(i.read_text())
        for out in ("one", "two")
        for i in (runs / out / "cache" / "scores").glob("*/info.json")
        if "curve" in json.loads(i.read_text())
    ]
    assert [i["processes"] for i in infos] == [1, 2]
    mse = [[row["nmse"] for row in i["curve"]] for i in infos]
    assert len(mse[0]) == len(mse[1]) == infos[0]["steps"] == 2 and mse[0] == pytest.approx(mse[1], rel=1e-4)
    for method in ("ecodiff", "magnitude"):
        plans = [
            json.loads(next((runs / out / "models").glob(f"*-{method}-30-*/plan.json")).read_text())
            for out in ("one", "two")
        ]
        assert plans[0]["modules"] == plans[1]["modules"]


@pytest.mark.slow
def test_two_processes_measure_the_same_quality(runs):
    one, two = _records(runs / "one"), _records(runs / "two")
    for method in ("base", "ecodiff", "magnitude", "magnitude+recovery"):
        a, b = one[method]["metrics"], two[method]["metrics"]
        assert one[method]["status"] == two[method]["status"] == "ok"
        for name in ("frechet_distance", "clip_score", "recognisability", "ssim_vs_base", "psnr_vs_base"):
            if method == "base" and name.endswith("_vs_base"):
                assert a[name]["status"] == b[name]["status"] == "unavailable"
                continue
            assert b[name]["value"] == pytest.approx(a[name]["value"], rel=1e-5), (method, name)
        assert a["frechet_distance"]["details"]["n_fake"] == b["frechet_distance"]["details"]["n_fake"] == 5
        assert b["recognisability"]["details"]["n_samples"] == 5
        assert b["params_removed_frac"]["value"] == a["params_removed_frac"]["value"]
        # speed is measured on every rank and combined: throughput sums the ranks'
        tp = b["throughput_img_per_s"]
        assert tp["details"]["across_ranks"] == "sum" and tp["value"] == pytest.approx(
            sum(tp["details"]["per_rank"])
        )
        assert len(b["latency_image_s"]["details"]["per_rank"]) == 2


@pytest.mark.slow
def test_two_processes_write_one_store_once_and_one_report(runs):
    one, two = _records(runs / "one"), _records(runs / "two")
    assert {r["run_id"] for r in two.values()} == {next(iter(two.values()))["run_id"]}
    assert all(r["provenance"]["world_size"] == 1 for r in one.values())
    for r in two.values():
        dist = r["provenance"]["distributed"]
        assert r["provenance"]["world_size"] == 2 and dist["backend"] == "gloo"
        assert [x["rank"] for x in dist["ranks"]] == [0, 1] and dist["launcher"] == "torchrun"
    assert _files(runs / "one") == _files(runs / "two")  # the same files, nothing extra from rank 1
    assert json.loads((runs / "two-log" / "rank1.json").read_text()) == []
    assert (runs / "two" / "report" / "report.md").is_file()
    assert len(list((runs / "two").rglob("report.md"))) == 1
    assert "processes" in (runs / "two" / "report" / "report.md").read_text()


@pytest.mark.slow
def test_a_failure_on_rank_1_fails_the_spec_on_every_rank_without_hanging(tmp_path):
    suite = {
        **SUITE,
        "methods": [{"name": "magnitude", "ratios": [0.3]}],
        "evaluation": {**SUITE["evaluation"], "samples": 4, "metrics": ["ssim_vs_base"]},
    }
    proc, elapsed = _run(tmp_path, "fail", 2, suite=suite, plant=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert elapsed < 120  # the collective timeout: no rank waited for it
    records = {r["method"]: r for r in Store(tmp_path / "fail" / "store.sqlite", readonly=True).records()}
    assert records["base"]["status"] == "ok"
    assert records["magnitude"]["status"] == "failed"
    assert "rank 1" in records["magnitude"]["error"] and "planted failure" in records["magnitude"]["error"]
    # resumed on 2 processes: the base is skipped, its cached images reach both ranks, the failed spec is redone
    (tmp_path / "fail-log").rename(tmp_path / "fail-log-1")
    proc, _ = _run(tmp_path, "fail", 2, suite=suite, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = {r["method"]: r for r in Store(tmp_path / "fail" / "store.sqlite", readonly=True).records()}
    assert again["base"] == records["base"] and again["magnitude"]["status"] == "ok"
    assert again["magnitude"]["metrics"]["ssim_vs_base"]["value"] > 0.5
    assert json.loads((tmp_path / "fail-log" / "rank1.json").read_text()) == []
