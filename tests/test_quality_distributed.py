"""Sharded metrics: 2 CPU processes over gloo (launched with torchrun) give the same Fréchet distance,
CLIP score and SSIM/PSNR as 1 process on the same images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

WORKER = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import load_file
    from ecodiff_bench.quality import (ClipScore, ConsistencyVsBase, FrechetDistance, ReferenceStats,
                                       init_distributed, rank_world, shard_range)

    class Flatten(torch.nn.Module):
        num_features = 48
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)

    def run(data_dir, out_path):
        torch.set_num_threads(1)
        data = load_file(f"{data_dir}/images.safetensors")
        prompts = json.loads(open(f"{data_dir}/prompts.json").read())
        real, fake = data["real"], data["fake"]
        rank, world = rank_world()
        idx = list(shard_range(len(fake), rank, world))
        fd = FrechetDistance(Flatten())
        fd.update(real[idx], real=True)
        fd.update(fake[idx], real=False)
        # reference statistics loaded from a file (injected on rank 0 only) + sharded generated images
        fd_ref = FrechetDistance(Flatten(), num_samples=len(fake))
        fd_ref.set_reference(ReferenceStats.load(f"{data_dir}/ref.safetensors"))
        fd_ref.update(fake[idx], real=False)
        clip = ClipScore(f"local-dir:{data_dir}/clip")
        clip.update(fake[idx], [prompts[i] for i in idx])
        cons = ConsistencyVsBase()
        cons.update(fake[idx], real[idx])
        out = {"frechet": fd.compute_value().value, "frechet_ref": fd_ref.compute_value().value,
               "n_fake": fd_ref.compute_value().details["n_fake"],
               "clip": clip.compute_value().value, "clip_n": clip.compute_value().details["n"],
               **{k: v.value for k, v in cons.compute().items()}, "world": world, "local": len(idx)}
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(out, f)

    if __name__ == "__main__":
        if init_distributed() is not True and len(sys.argv) < 4:
            raise SystemExit("expected a process group")
        run(sys.argv[1], sys.argv[2])
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
""")

MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    import open_clip

    from ecodiff_bench.quality import FrechetDistance

    d = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(0)
    n = 11  # uneven shards: 6 + 5
    real = torch.rand(n, 3, 16, 16, generator=g)
    fake = (real * 0.7 + 0.3 * torch.rand(n, 3, 16, 16, generator=g)).clamp(0, 1)
    save_file({"real": real, "fake": fake}, str(d / "images.safetensors"))
    (d / "prompts.json").write_text(json.dumps([f"a handwritten digit {i % 10}" for i in range(n)]))
    torch.manual_seed(0)
    (d / "clip").mkdir()
    (d / "clip" / "open_clip_config.json").write_text(json.dumps({"model_cfg": MODEL_CFG}))
    model = open_clip.CLIP(**MODEL_CFG)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(d / "clip" / "open_clip_model.safetensors"),
    )
    (d / "worker.py").write_text(WORKER)

    # reference statistics of a separate real set, shared by every process through a file
    ns: dict = {}
    exec(compile(WORKER.split("def run")[0], "worker", "exec"), ns)
    fd = FrechetDistance(ns["Flatten"]())
    fd.update(torch.rand(100, 3, 16, 16, generator=g), real=True)
    fd.real_stats().save(d / "ref.safetensors")
    return d


def _run(args, env_extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow  # two fresh interpreters importing torch, open_clip and torchmetrics: ~20-40 s on 2 cores
def test_two_processes_match_one(shared):
    one = shared / "one.json"
    two = shared / "two.json"
    r1 = _run(
        [sys.executable, str(shared / "worker.py"), str(shared), str(one), "single"], {"WORLD_SIZE": "1"}
    )
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(shared / "worker.py"),
            str(shared),
            str(two),
        ],
        {},
    )
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["world"] == 1 and b["world"] == 2 and b["local"] == 6
    assert b["n_fake"] == 11 and b["clip_n"] == 11
    for key in ("frechet", "frechet_ref", "clip", "ssim_vs_base", "psnr_vs_base"):
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), key


def test_shards_cover_everything_once():
    from ecodiff_bench.quality import shard, shard_range

    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 3]
    assert sum(parts, []) == items
    assert list(shard_range(2, 1, 4)) == [1]
    with pytest.raises(ValueError, match="rank/world"):
        shard_range(5, 3, 2)


def test_merged_shard_states_match_one_pass(shared):
    """The in-process version of the check above: metric states are sums, so shards merge exactly."""
    import open_clip

    from ecodiff_bench.quality import ClipScore, FrechetDistance

    ns: dict = {}
    exec(compile(WORKER.split("def run")[0], "worker", "exec"), ns)
    data = load_file(str(shared / "images.safetensors"))
    prompts = json.loads((shared / "prompts.json").read_text())
    real, fake = data["real"], data["fake"]
    torch.manual_seed(0)
    model = open_clip.CLIP(**MODEL_CFG).eval()
    pre, tok = open_clip.image_transform(32, is_train=False), open_clip.get_tokenizer("ViT-B-32")

    def metrics():
        return FrechetDistance(ns["Flatten"]()), ClipScore(model=model, preprocess=pre, tokenizer=tok)

    fd_all, clip_all = metrics()
    fd_all.update(real, real=True)
    fd_all.update(fake, real=False)
    clip_all.update(fake, prompts)
    parts = []
    for idx in (range(0, 6), range(6, 11)):
        fd, clip = metrics()
        fd.update(real[list(idx)], real=True)
        fd.update(fake[list(idx)], real=False)
        clip.update(fake[list(idx)], [prompts[i] for i in idx])
        parts.append((fd, clip))
    parts[0][0].merge_state(parts[1][0])
    parts[0][1].merge_state(parts[1][1])
    assert float(parts[0][0].compute()) == pytest.approx(float(fd_all.compute()), abs=1e-9)
    # float32 encoders give batch-size-dependent rounding (~1e-7 relative)
    assert float(parts[0][1].compute()) == pytest.approx(float(clip_all.compute()), rel=1e-6)
