"""Does EcoDiff keep quality better than its baselines? Paired, on the digits zoo, with training seeds.

For each model, ratio and method (EcoDiff, Taylor, magnitude, random) the pruned model generates the
same prompt x seed pairs as its unpruned model; reported per run and as mean and spread over the
mask-training (or scoring) seeds: SSIM against the unpruned images, Fréchet distance (digits-clip
features, against the held-out real digits), recognisability; for EcoDiff also the controller's final
expected sparsity, the agreement of the plan's cut with the closed gates, steps and training time.
``frechet_vs_base`` is the same Fréchet distance measured to the unpruned model's images instead of
real digits (how far the pruned model's output distribution moved).

Calibration, method options and the evaluation set come from a suite (default ``suites/digits-full.yaml``),
so the figures are those of the suite's own settings. ``--split tuning`` evaluates on a third set of
prompt x seed pairs (seeds from 500,000), disjoint from both the calibration and the suite's evaluation:
tune on that, never on the evaluation split. Results are appended run by run to the JSON file, and runs
already there are skipped; each run's scores are kept under ``results/cache/scores/``, so an interrupted
benchmark resumes without retraining.

    python benchmarks/ecodiff_quality.py [--models digits-flux digits-sdxl] [--ratios 0.2 0.4] [--seeds 0 1]
        [--split evaluation|tuning] [--samples N] [--set lr=0.2 --set steps=300] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TUNING_SEED = 500_000
METHODS = ("ecodiff", "taylor", "magnitude", "random")
METRICS = ("ssim_vs_base", "frechet_distance", "recognisability")


@functools.lru_cache(maxsize=1)
def _digits_clip():
    from ecodiff_bench.zoo import load_digits_clip

    return load_digits_clip("cpu")[0]


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def _setup(args):
    from ecodiff_bench.suite import load_suite, validate_suite

    suite = load_suite(args.suite)
    data = suite.model_dump(mode="python")
    ev = data["evaluation"]
    ev["metrics"] = list(METRICS)
    if args.samples:
        ev["samples"] = args.samples
    if args.split == "tuning":
        ev["seed"] = TUNING_SEED  # validate_suite refuses calibration pairs that overlap these
    suite = validate_suite(data, source=suite.source)
    methods = {m.name: m for m in suite.methods}
    options = {name: m.options.model_dump(mode="json") for name, m in methods.items()}
    for item in args.set:
        key, _, value = item.partition("=")
        options["ecodiff"][key] = _parse_value(value)
    return suite, options


def _run_id(model, method, ratio, seed, options, suite, split) -> str:
    blob = json.dumps(
        [
            model,
            method,
            ratio,
            seed,
            options.get(method, {}),
            suite.calibration.model_dump(mode="json"),
            suite.evaluation.model_dump(mode="json"),
            split,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ModelBench:
    """One model: its unpruned images of the evaluation pairs and the metrics, computed once."""

    def __init__(self, name, suite, cache: Path):
        from ecodiff_bench import models
        from ecodiff_bench.run import quality_setup

        self.name, self.suite = name, suite
        self.pipe = models.load_pipeline(name, None, device=torch.device("cpu"), dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.settings = models.call_settings(name)  # steps, guidance, height, width[, max_sequence_length]
        ev = suite.evaluation
        prompts = ev.load_prompts()
        self.prompts = [prompts[i % len(prompts)] for i in range(ev.samples)]
        self.seeds = [ev.seed + i for i in range(ev.samples)]
        self.quality = quality_setup.build(ev, cache, "cpu")
        self.base_images = self.generate(self.pipe)
        self.base_stats = self._feature_stats(self.base_images)
        self.base = self.metrics(self.base_images, None)

    def generate(self, pipe):
        from ecodiff_bench import models

        return models.generate(
            pipe, self.prompts, self.seeds, model=self.name, extra=self.settings, batch_size=50
        )

    def metrics(self, images, base_images) -> dict:
        from ecodiff_bench.quality import frechet_distance
        from ecodiff_bench.run import quality_setup

        values = quality_setup.compute(self.quality, list(METRICS), images, self.prompts, base_images)
        out = {k: v.value for k, v in values.items()}
        # the same distance, to the unpruned model's images instead of real digits
        if base_images is not None:
            out["frechet_vs_base"] = frechet_distance(*self._feature_stats(images), *self.base_stats)
        return out

    @staticmethod
    def _feature_stats(images):
        from ecodiff_bench.zoo import encode_images

        f = encode_images(_digits_clip(), images, normalize=False).double()
        return f.mean(0), torch.cov(f.T)

    def score(self, method: str, ratio: float, seed: int, options: dict):
        import pruning
        from ecodiff_bench.suite.methods import config_kwargs

        # the suite's options that the method's config takes (not the plan's ranking, target, align); an
        # option left unset (None: an architecture default in a suite) takes pruning's default
        opts = {
            k: v for k, v in config_kwargs(method, options.get(method, {}), seed).items() if v is not None
        }
        if pruning.ratio_specific(method, opts):
            opts["target_sparsity"] = ratio
        pairs = self.suite.calibration.pairs() if method in ("ecodiff", "taylor") else None
        t0 = time.perf_counter()
        scores = pruning.score(
            self.pipe,
            method,
            pairs,
            sampling=self.settings,
            options={**opts, "progress": False} if method in ("ecodiff", "taylor") else opts,
        )
        return scores, time.perf_counter() - t0

    def run(self, method, ratio, seed, options, keep: Path | None = None) -> dict:
        """One pruned variant; ``keep``: a folder where its scores are kept (and reused when present)."""
        from safetensors.torch import load_file, save_file

        import pruning

        if keep is not None and (keep / "scores.safetensors").exists():
            info = json.loads((keep / "info.json").read_text())
            score_s = info.get("score_s", info.get("pruning_time_s"))
            scores = pruning.Scores(method, load_file(keep / "scores.safetensors"), info)
        else:
            scores, score_s = self.score(method, ratio, seed, options)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in scores.values.items()}, keep / "scores.safetensors")
                (keep / "info.json").write_text(json.dumps({**scores.info, "score_s": score_s}))
        plan = pruning.plan(self.pipe, scores, ratio)
        pruned = pruning.apply(copy.deepcopy(self.pipe), plan)
        row = {
            "model": self.name,
            "method": method,
            "ratio": ratio,
            "seed": seed,
            "score_time_s": score_s,
            "params_removed_frac": plan.achieved()["params_removed_frac_of_prunable"],
            **self.metrics(self.generate(pruned), self.base_images),
        }
        if method == "ecodiff":
            eco = plan.info["ecodiff"]
            row.update(
                {
                    k: eco[k]
                    for k in ("expected_sparsity", "agreement", "closed_share", "steps", "train_time_s")
                }
            )
            every = max(1, len(scores.info["curve"]) // 30)
            row["curve"] = [
                {k: round(v, 5) if isinstance(v, float) else v for k, v in c.items()}
                for c in scores.info["curve"][::every]
            ]
        return row


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and spread (sample standard deviation over seeds) per model, ratio and method."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["ratio"], r["method"], r.get("variant", "")), []).append(r)
    out = []
    for (model, ratio, method, variant), rows in sorted(groups.items()):
        entry = {"model": model, "ratio": ratio, "method": method, "variant": variant, "n_runs": len(rows)}
        for key in (*METRICS, "frechet_vs_base", "expected_sparsity", "agreement", "train_time_s"):
            vals = [r[key] for r in rows if r.get(key) is not None]
            if vals:
                entry[key] = {
                    "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "runs": vals,
                }
        out.append(entry)
    return out


def _print(summary: list[dict], base: dict) -> None:
    print(
        f"{'model':20s} {'ratio':>5s} {'method':10s} {'SSIM vs base':>16s} {'Frechet':>14s} {'to base':>12s}"
        f" {'recog.':>12s} {'exp. sparsity':>14s} {'agreement':>10s} {'train s':>8s}"
    )

    def fmt(e, key, digits=3):
        v = e.get(key)
        return f"{v['mean']:.{digits}f}±{v['std']:.{digits}f}" if v else "-"

    for e in summary:
        method = f"{e['method']} {e['variant']}".strip()
        print(
            f"{e['model']:20s} {e['ratio']:5.0%} {method:10s} {fmt(e, 'ssim_vs_base'):>16s} "
            f"{fmt(e, 'frechet_distance', 2):>14s} {fmt(e, 'frechet_vs_base', 2):>12s} "
            f"{fmt(e, 'recognisability', 2):>12s} "
            f"{fmt(e, 'expected_sparsity'):>14s} {fmt(e, 'agreement', 2):>10s} {fmt(e, 'train_time_s', 0):>8s}"
        )
    for model, b in base.items():
        print(
            f"{model}: unpruned Frechet {b['frechet_distance']:.2f}, recognisability {b['recognisability']:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default=str(ROOT / "suites" / "digits-full.yaml"))
    ap.add_argument("--models", nargs="+", default=["digits-flux", "digits-sdxl"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--ratios", nargs="+", type=float, default=[0.2, 0.4])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="mask-training / scoring seeds")
    ap.add_argument("--split", choices=("evaluation", "tuning"), default="evaluation")
    ap.add_argument("--samples", type=int, default=None, help="evaluation samples (default: the suite's)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override an EcoDiff option"
    )
    ap.add_argument(
        "--scores-from",
        default=None,
        metavar="DIR",
        help="output folder of `ecodiff-bench run` of the same suite: reuse its scores",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    suite, options = _setup(args)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"ecodiff_quality_{args.split}_cpu.json")
    result = json.loads(out.read_text()) if out.exists() else {"runs": [], "base": {}}
    done = {r["run_id"] for r in result["runs"]}
    cache = ROOT / "results" / "cache"  # reference statistics of the Fréchet distance (git-ignored)
    for name in args.models:
        bench = None
        for ratio in args.ratios:
            for method in args.methods:
                for seed in args.seeds if method != "magnitude" else args.seeds[:1]:
                    run_id = _run_id(name, method, ratio, seed, options, suite, args.split)
                    if run_id in done:
                        continue
                    bench = bench or ModelBench(name, suite, cache)
                    result["base"][name] = bench.base
                    keep = _suite_scores(args, suite, name, method, ratio, seed) or cache / "scores" / run_id
                    row = {"run_id": run_id, **bench.run(method, ratio, seed, options, keep)}
                    row["scores_from"] = str(keep)
                    if method == "ecodiff" and args.set:
                        row["variant"] = " ".join(args.set)
                    print(json.dumps(row), flush=True)
                    result["runs"].append(row)
                    result.update(_header(args, suite, options))
                    result["summary"] = summarize(result["runs"])
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(result, indent=1))
    result["summary"] = summarize(result["runs"])
    _print(result["summary"], result["base"])


def _suite_scores(args, suite, model, method, ratio, seed) -> Path | None:
    """The scores an ``ecodiff-bench run`` of the same suite (output folder ``--scores-from``) computed for
    this model, method, ratio and seed, when present: reused instead of training the same masks again."""
    if not args.scores_from or args.set:
        return None
    from ecodiff_bench.suite import expand

    plan = expand(suite, out=args.scores_from)
    for spec in plan.specs:
        if (spec.model, spec.method, spec.ratio, spec.seed) == (model, method, ratio, seed):
            folder = plan.layout.scores(spec)
            return folder if (folder / "scores.safetensors").exists() else None
    return None


def _header(args, suite, options) -> dict:
    import pruning

    ev = suite.evaluation
    return {
        "benchmark": "ecodiff_quality",
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": str(Path(args.suite).name),
        "split": args.split,
        "evaluation": {
            "samples": ev.samples,
            "first_seed": ev.seed,
            "prompts": "digits (sample i: prompt i % 10)",
        },
        "calibration": {
            "pairs": len(suite.calibration.pairs()),
            "first_seed": suite.calibration.seed,
            "seeds_per_prompt": suite.calibration.seeds_per_prompt,
        },
        "options": options,
        "threads": torch.get_num_threads(),
        "pruning_version": getattr(pruning, "__version__", None),
        "note": "spread = sample standard deviation over the seeds; magnitude is deterministic (one run)",
    }


if __name__ == "__main__":
    main()
