"""How fast, and in how little memory, are hostile suite files refused? (target: alias bomb < 2 s, < 200 MB)

Each hostile file is validated by a fresh ``ecodiff-bench validate FILE`` process; its wall time and peak
resident memory (the process's own ``VmHWM`` from /proc, read at exit: interpreter, click, pydantic and the
suite package included; ``ru_maxrss`` would also count this parent's memory, inherited at fork) are
reported next to the same figures for a valid suite, so the cost of refusing is the difference. The YAML
reader alone is also measured in this process (time and tracemalloc peak).

    python benchmarks/hostile_inputs.py [--repeats 3]

Prints the figures and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = (
    "name: t\nmodels: [digits-sdxl]\nmethods: [{name: magnitude, ratios: [0.2]}]\nenergy: {country: FRA}\n"
)


def alias_bomb() -> str:
    """Nine levels of nine aliases: 9 ** 9 (387 million) values once expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


CASES = {
    "valid suite (reference)": SUITE,
    "alias bomb under evaluation.prompts": alias_bomb() + SUITE + "evaluation: {prompts: *a8}\n",
    "alias bomb as models": alias_bomb() + SUITE.replace("[digits-sdxl]", "*a8"),
    "alias bomb under an unknown key": alias_bomb() + SUITE + "zzz: *a8\n",
    "list nested 20,000 deep": "x: " + "[" * 20000 + "]" * 20000 + "\n" + SUITE,
    "mapping nested 20,000 deep": "x: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n" + SUITE,
    "50 MB file": SUITE + "description: '" + "x" * (50 * 1024 * 1024) + "'\n",
}


# The CLI, with its own peak resident memory (KiB) written to the fd in argv[2] when it exits, however it exits.
_CHILD = """
import atexit, os, runpy, sys
fd = int(sys.argv[2])
def report():
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    os.write(fd, hwm.split()[1].encode())
atexit.register(report)
sys.argv = ["ecodiff-bench", "validate", sys.argv[1]]
runpy.run_module("ecodiff_bench", run_name="__main__")
"""


def run_cli(path: Path) -> tuple[float, float | None, int, str]:
    """(wall seconds, peak RSS in MiB, exit code, first line of stderr) of one validate process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    read, write = os.pipe()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(write)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=(write,),
        check=False,
    )
    wall = time.perf_counter() - t0
    os.close(write)
    with os.fdopen(read, "rb") as f:
        kib = f.read().decode() or None
    err = proc.stderr.decode(errors="replace")
    return (
        wall,
        None if kib is None else int(kib) / 1024,
        proc.returncode,
        (err.strip().splitlines() or [""])[0],
    )


def reader_alone(text: str) -> tuple[float, float]:
    """(seconds, tracemalloc peak in MiB) of the YAML reader on ``text``, refused or not."""
    from ecodiff_bench.core.yamlfile import YamlError, parse_yaml

    tracemalloc.start()
    t0 = time.perf_counter()
    with contextlib.suppress(YamlError):
        parse_yaml(text, "bench.yaml")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="processes per case (the median is reported)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in CASES.items():
            path = Path(tmp) / "suite.yaml"
            path.write_text(text, encoding="utf-8")
            runs = [run_cli(path) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            rss = max((r[1] for r in runs if r[1] is not None), default=float("nan"))
            code, message = runs[0][2], runs[0][3]
            read_s, read_mib = reader_alone(text) if len(text) < 4 * 2**20 else (None, None)
            rows.append(
                {
                    "case": name,
                    "bytes": len(text.encode()),
                    "exit_code": code,
                    "wall_s_median": round(wall, 3),
                    "peak_rss_mib_max": round(rss, 1),
                    "reader_s": None if read_s is None else round(read_s, 4),
                    "reader_peak_mib": None if read_mib is None else round(read_mib, 2),
                    "message": message[:200],
                }
            )
            r = rows[-1]
            reader = f"reader {r['reader_s']} s / {r['reader_peak_mib']} MiB" if read_s is not None else ""
            print(
                f"{name:38s} {r['bytes']:>10,} B  exit {code}  {wall:6.2f} s  {rss:7.1f} MiB  {reader}\n"
                f"    {message[:150]}"
            )
    out = ROOT / "benchmarks" / "results" / "hostile_inputs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "hostile_inputs",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "cases": rows,
    }
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
