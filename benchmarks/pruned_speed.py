"""Does pruning buy wall-clock time in proportion to the FLOPs it removes? Base vs pruned denoisers.

For each family (SDXL-architecture U-Net, FLUX-architecture transformer; random weights, which speed
does not depend on) and each ratio of prunable parameters (default 10/20/30/40%), three denoisers are
timed in the same interleaved rounds: the base, the pruned model from an unaligned plan, and the pruned
model from a plan aligned to ``--align`` (FFN widths rounded to a multiple; see
``pruning.plans.align_ffn_widths``). One call is one sampling step (denoiser forward plus the Euler update)
under ``torch.inference_mode``; every round calls the three in a rotating order. Reported per model:
latency per step (median, mean), the FLOPs of one step (torch.utils.flop_counter: matmul, convolution,
attention), and the latency ratio to the base with a 95% paired bootstrap interval over rounds next to the
FLOPs ratio; per ratio, aligned vs unaligned latency with its interval.

Scores are seeded random (``--method random``, default): on random weights magnitude ranks by the init
scale of each layer and empties whole low-resolution FFNs, whereas random scores prune every layer at
about the same rate, like a learned plan. ``--method magnitude`` is available.

Targets (reported, not asserted): latency ratio within 0.05 of the FLOPs ratio at 20%; aligned plans
not slower than unaligned ones (the interval of aligned / unaligned does not lie above 1).

    python benchmarks/pruned_speed.py [--scale cpu|tiny|full] [--families sdxl,flux] [--ratios 0.1,0.2,0.3,0.4]
        [--align 64] [--rounds 16] [--warmup 2] [--threads 2] [--device cpu] [--out PATH]

``--scale cpu`` (default) is sized to be compute-bound on 2 CPU cores (see ``_common.SCALES``; stated in the
JSON); ``tiny`` is a smoke run; ``full`` is the published architecture (a GPU's job: use --device cuda).
Timing-sensitive: run it with no other heavy job on the machine.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402

import pruning  # noqa: E402

FLOPS_TARGET = 0.05  # |latency ratio - FLOPs ratio| at the checked ratio
CHECK_RATIO = 0.2


def _parse_floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"ratios must lie strictly between 0 and 1, got {text!r}")
    return values


def _parse_families(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in common.FAMILIES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown family {bad or text!r}; allowed: {', '.join(common.FAMILIES)}"
        )
    return names


def _scores(denoiser, method: str, seed: int) -> pruning.Scores:
    groups = pruning.find_groups(denoiser)
    if method == "magnitude":
        return pruning.Scores(method, pruning.magnitude_scores(denoiser, groups))
    return pruning.Scores(method, pruning.random_scores(groups, seed=seed))


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "median_s": ordered[len(ordered) // 2],
        "mean_s": sum(times) / len(times),
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "n": len(times),
    }


def bench_family(family: str, args, device) -> dict:
    """All ratios of one family: base / unaligned / aligned timed in the same rounds, ratio by ratio."""
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    base = common.build_denoiser(family, args.scale, device=device, dtype=dtype, seed=args.seed)
    _, traj = common.make_step(family, args.scale, cfg=False, device=device, dtype=dtype)
    x = traj.latents

    def step(den):
        return lambda: traj.step(den, x, 0)

    scores = _scores(base, args.method, args.seed)
    base_params = sum(p.numel() for p in base.parameters())
    base_flops = common.flops_of(step(base))
    rows = []
    for ratio in args.ratios:
        t0 = time.perf_counter()
        models, meta = {"base": base}, {}
        for label, align in (("unaligned", None), ("aligned", args.align)):
            plan = pruning.plan(base, scores, ratio, align=align)
            den = pruning.apply_plan(copy.deepcopy(base), plan)
            models[label] = den
            achieved = plan.achieved()
            meta[label] = {
                "params_removed_frac_of_prunable": achieved["params_removed_frac_of_prunable"],
                "params_removed_frac_of_model": achieved["params_removed_frac_of_model"],
                "params": sum(p.numel() for p in den.parameters()),
                "flops_per_step": common.flops_of(step(den)),
                "align": plan.info.get("align"),
            }
        times = common.interleaved_rounds(
            {k: step(m) for k, m in models.items()}, rounds=args.rounds, warmup=args.warmup, device=device
        )
        row = {"ratio": ratio, "base": {**_summary(times["base"]), "flops_per_step": base_flops}}
        for label in ("unaligned", "aligned"):
            flops_ratio = meta[label]["flops_per_step"] / base_flops
            latency = common.paired_ratio(times[label], times["base"], seed=args.seed)
            row[label] = {
                **meta[label],
                **_summary(times[label]),
                "flops_ratio": flops_ratio,
                "latency_ratio": latency,
                "latency_minus_flops": latency["ratio"] - flops_ratio,
            }
        row["aligned_vs_unaligned"] = common.paired_ratio(
            times["aligned"], times["unaligned"], seed=args.seed
        )
        row["aligned_vs_unaligned"]["verdict"] = common.verdict(row["aligned_vs_unaligned"])
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        _print_row(family, row)
        del models
    side, text_tokens = common.SHAPES[family][args.scale]
    return {
        "family": family,
        "architecture": type(base).__name__,
        "config_overrides": common.SCALES[family][args.scale],
        "latent_side": side,
        "text_tokens": text_tokens,
        "image_tokens": (side // 2) ** 2 if family == "flux" else None,
        "batch": 1,
        "params": base_params,
        "prunable_params": sum(g.params_total for g in pruning.find_groups(base)),
        "flops_per_step": base_flops,
        "rows": rows,
    }


def _print_row(family: str, row: dict) -> None:
    b = row["base"]
    print(f"{family} {row['ratio']:.0%}: base {b['median_s'] * 1e3:.1f} ms/step")
    for label in ("unaligned", "aligned"):
        r = row[label]
        lat = r["latency_ratio"]
        print(
            f"  {label:9s} params -{r['params_removed_frac_of_prunable']:.3f} of prunable  FLOPs x{r['flops_ratio']:.3f}"
            f"  latency x{lat['ratio']:.3f} [{lat['ci95'][0]:.3f}, {lat['ci95'][1]:.3f}]"
            f"  ({r['median_s'] * 1e3:.1f} ms)"
        )
    a = row["aligned_vs_unaligned"]
    print(f"  aligned / unaligned x{a['ratio']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]: {a['verdict']}")


def checks(families: list[dict]) -> dict:
    """The two targets, per family and plan kind."""
    out = {"latency_tracks_flops_at_20pct": {}, "aligned_not_slower": {}}
    for fam in families:
        row = next((r for r in fam["rows"] if abs(r["ratio"] - CHECK_RATIO) < 1e-9), None)
        if row is not None:
            for label in ("unaligned", "aligned"):
                gap = row[label]["latency_minus_flops"]
                out["latency_tracks_flops_at_20pct"][f"{fam['family']}/{label}"] = {
                    "flops_ratio": row[label]["flops_ratio"],
                    "latency_ratio": row[label]["latency_ratio"]["ratio"],
                    "gap": gap,
                    "target": FLOPS_TARGET,
                    "pass": abs(gap) <= FLOPS_TARGET,
                }
        for r in fam["rows"]:
            a = r["aligned_vs_unaligned"]
            out["aligned_not_slower"][f"{fam['family']}/{r['ratio']:g}"] = {
                "ratio": a["ratio"],
                "ci95": a["ci95"],
                "verdict": a["verdict"],
                "pass": a["verdict"] != "slower",
            }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("cpu", "tiny", "full"), default="cpu")
    parser.add_argument("--families", type=_parse_families, default=list(common.FAMILIES))
    parser.add_argument("--ratios", type=_parse_floats, default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--align", type=int, default=64)
    parser.add_argument("--method", choices=("random", "magnitude"), default="random")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.align < 1 or args.rounds < 2 or args.warmup < 0 or args.threads < 1:
        parser.error("--align, --threads must be >= 1, --rounds >= 2, --warmup >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with torch.inference_mode():
        families = [bench_family(f, args, device) for f in args.families]
    result = {
        "benchmark": "pruned_speed",
        **common.environment(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "method": "one sampling step per call (denoiser forward + Euler update, batch 1, no CFG), "
        "torch.inference_mode; base/unaligned/aligned called once per round in rotating order after "
        "warm-up; ratios = mean(pruned)/mean(base) with 95% paired percentile bootstrap over rounds "
        "(scipy, 4000 resamples); FLOPs by torch.utils.flop_counter",
        "families": families,
        "checks": checks(families),
        "wall_s": time.perf_counter() - t0,
    }
    out = args.out or common.ROOT / "benchmarks" / "results" / f"pruned_speed_{args.scale}.json"
    common.write_json(out, result)
    for name, check in result["checks"].items():
        for key, c in check.items():
            print(f"{'PASS' if c['pass'] else 'FAIL'} {name} {key}")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
