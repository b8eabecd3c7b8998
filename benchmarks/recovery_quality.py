"""Where does recovery move a pruned model? Fréchet distance to the real digits and to the unpruned model.

Recovery distils a pruned model toward its unpruned model, not toward the real digits, so its effect on the
Fréchet distance to real digits depends on which side of the unpruned model's distance the pruned model
started. This reloads the models a ``digits-recovery`` run saved (``<out>/models``, every pruned and recovered
one), regenerates the suite's evaluation pairs with each and reports, beside the record's figures, the same
Fréchet distance measured to the unpruned model's images (``frechet_vs_base``, digits-clip features; as in
``benchmarks/ecodiff_quality.py``). The regenerated real-digits distance must equal the stored record's:
it checks that every saved model reproduces what the run measured.

    python benchmarks/recovery_quality.py --run /tmp/rec2 [--suite suites/digits-recovery.yaml] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from ecodiff_quality import ModelBench, _setup  # noqa: E402  (the same evaluation, features and metrics)


def _records(store: Path) -> dict[str, dict]:
    """Stored record per model folder name: ``<model>-<method>-<ratio>-<record id[:8]>``."""
    from ecodiff_bench.core.store import Store

    out = {}
    with Store(store, readonly=True) as s:
        for r in s.records():
            if r["method"] != "base" and r["status"] == "ok":
                out[r["record_id"][:8]] = r
    return out


def main() -> None:
    import pruning

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="the --out folder of a digits-recovery run")
    ap.add_argument("--suite", default=str(ROOT / "suites" / "digits-recovery.yaml"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recovery_quality_cpu.json")
    args = ap.parse_args()
    suite, _ = _setup(argparse.Namespace(suite=args.suite, samples=None, split="evaluation", set=[]))
    records = _records(args.run / "store.sqlite")
    rows = []
    for model in [m.key for m in suite.models]:
        bench = ModelBench(model, suite, args.run / "cache")
        rows.append({"model": model, "method": "base", **bench.base})
        for folder in sorted((args.run / "models").glob(f"{model}-*")):
            rec = records.get(folder.name.rsplit("-", 1)[1])
            if rec is None or rec["model"] != model:
                continue
            pipe = pruning.load(folder)
            pipe.set_progress_bar_config(disable=True)
            got = bench.metrics(bench.generate(pipe), bench.base_images)
            stored = rec["metrics"]["frechet_distance"]["value"]
            row = {
                "model": model,
                "method": rec["method"],
                "ratio": rec["ratio"],
                **got,
                "stored_frechet": stored,
            }
            rows.append(row)
            print(
                f"{model:12s} {rec['method']:20s} FD {got['frechet_distance']:6.2f} (stored {stored:6.2f})"
                f"  to base {got['frechet_vs_base']:6.2f}  SSIM {got['ssim_vs_base']:.3f}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.write_text(json.dumps({"suite": suite.name, "created": when, "rows": rows}, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
