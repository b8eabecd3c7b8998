"""The ``ecodiff-bench`` command line.

Importing this module is cheap (click only): suites, the runner, the zoo and torch are imported by the
commands that need them. User mistakes (an invalid suite, an unknown name, a missing file) end with a
message on stderr that names the field, the value and what is allowed, and exit code 2, never a traceback
(set ``ECODIFF_BENCH_DEBUG=1`` to see one). Failures of the pipeline itself exit with code 1.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ecodiff_bench.cli import results
from ecodiff_bench.core.errors import RecordError, StoreError, SuiteError
from ecodiff_bench.core.registry import UnknownNameError
from ecodiff_bench.core.tables import text_table

DEFAULT_SUITE = "digits"
LS_KINDS = ("models", "methods", "metrics", "suites")


class UserError(click.ClickException):
    """A mistake in what the user asked for: exit code 2, message only."""

    exit_code = 2


def _user_message(exc: BaseException) -> str | None:
    """The message to show for an exception that is the user's to fix, or None for a genuine failure."""
    if isinstance(exc, SuiteError | UnknownNameError | StoreError | RecordError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or (exc.args[0] if exc.args else "")
        return f"file not found: {name}" if name else str(exc)
    cls = type(exc)
    if cls.__name__ == "ValidationError" and cls.__module__.startswith("pydantic"):
        return str(exc)
    return None


class _Group(click.Group):
    """A group that turns user mistakes raised anywhere below it into exit code 2 with a plain message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            message = _user_message(exc)
            if message is None or os.environ.get("ECODIFF_BENCH_DEBUG"):
                raise
            raise UserError(message) from None


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("ecodiff-bench")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "unknown"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="ecodiff-bench")
def main() -> None:
    """Prune text-to-image diffusion models (EcoDiff, Taylor, magnitude, random) and benchmark them
    before and after: latency, memory, energy, carbon, FID, CLIP score, SSIM vs the unpruned model.

    \b
    Quick start:
      ecodiff-bench run                      # the embedded digits suite, on the CPU
      ecodiff-bench validate suites/sdxl.yaml
      ecodiff-bench run suites/sdxl.yaml --smoke
      ecodiff-bench ls suites
    """


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _load(suite_ref: str):
    from ecodiff_bench.suite import load_suite

    return load_suite(suite_ref)


def _fmt_ratio(r: float) -> str:
    return f"{r:.2f}"


def _model_line(m) -> str:
    parts = [f"source {m.ref.text()}"]
    for field, label in (
        ("steps", "steps"),
        ("guidance", "guidance"),
        ("max_sequence_length", "max_seq_len"),
    ):
        v = getattr(m, field)
        if v is not None:
            parts.append(f"{label} {v}")
    if m.height is not None or m.width is not None:
        parts.append(f"{m.height or '?'}x{m.width or '?'}")
    parts.append(m.dtype or "dtype auto")
    parts.append(f"device {m.device}")
    return f"{m.key} [{m.family}]: " + ", ".join(parts)


def _non_default_options(spec) -> str:
    from ecodiff_bench.suite.methods import default_options

    defaults = default_options(spec.method, spec.family)
    return " ".join(f"{k}={v}" for k, v in spec.options.items() if v != defaults.get(k))


def _prompt_desc(src) -> str:
    if isinstance(src.prompts, str):
        return f"builtin '{src.prompts}' prompts"
    if isinstance(src.prompts, list):
        return f"{len(src.prompts)} inline prompts"
    if src.prompts_file:
        return f"prompts from {src.prompts_file}"
    return "no prompts"


def _method_lines(specs: list) -> list[str]:
    """One line per method of one model's specs: ratios, seeds, options set, recovery."""
    lines = []
    for name in dict.fromkeys(s.method for s in specs if not s.is_base):
        mine = [s for s in specs if s.method == name and not s.is_recovered]
        recovered = next((s for s in specs if s.method == name and s.is_recovered), None)
        extra = _non_default_options(mine[0])
        lines.append(
            f"    {name}: ratios {', '.join(str(r) for r in dict.fromkeys(s.ratio for s in mine))}; "
            f"seeds {', '.join(str(x) for x in dict.fromkeys(s.seed for s in mine))}"
            + (f"; {extra}" if extra else "")
            + (f"; then recovered ({_recovery_text(recovered.recovery)})" if recovered else "")
        )
    return lines


def _summary(plan, description: str = "") -> str:
    """What ``validate`` and ``run --dry-run`` print: every setting as the plan resolved it (shrunk
    under --smoke), read from the plan and its specs."""
    groups = [group for _, group in plan.by_model()]
    first = plan.specs[0]
    n_pruned = len(groups[0]) - 1
    lines = [f"Suite {plan.suite!r} ({plan.source or 'in memory'}) is valid."]
    if description:
        lines.append(f"  {description}")
    lines.append(
        f"  {len(plan.specs)} runs = {len(groups)} model(s) x (1 base + {n_pruned} pruned)"
        + ("  [smoke]" if plan.smoke else "")
    )
    lines.append("  models:")
    lines += [f"    {_model_line(group[0].model_spec)}" for group in groups]
    methods = _method_lines(groups[0])
    lines += ["  methods:", *methods] if methods else ["  methods: none (base models only)"]
    cal = next((s.calibration for s in plan.specs if s.calibration is not None), None)
    if cal is not None:
        lines.append(f"  calibration: {cal.count} of the {_prompt_desc(cal)}")
    lines.append(_evaluation_line(first.evaluation))
    perf, en = first.performance, first.energy
    lat = perf.latency
    lines.append(
        f"  latency and energy: warmup {lat.warmup}, {lat.min_reps}..{lat.max_reps} rounds, at least "
        f"{lat.min_seconds:g} s, until the {100 * lat.confidence:g}% interval is within "
        f"+-{100 * lat.precision:g}% or {lat.max_seconds:g} s; batch {perf.batch_size}"
        + ("; base/pruned paired and interleaved" if perf.interleave else "")
    )
    carbon = (
        (f"carbon for {en.country}" + (f"/{en.region}" if en.region else "")) if en.carbon else "no carbon"
    )
    lines.append(f"  energy: {carbon}; idle baseline {plan.idle_baseline_s:g} s")
    report = ", ".join(plan.report_formats) or "none"
    lines.append(f"  outputs: {plan.layout.root} (store {plan.layout.store}; report {report})")
    hub = "allowed" if first.allow_hub else "off (local files and cache only)"
    lines.append(f"  hub downloads: {hub}")
    return "\n".join(lines)


def _evaluation_line(ev) -> str:
    if not ev.metrics:
        return "  evaluation: no quality metrics (speed, memory and energy only)"
    return (
        f"  evaluation: {ev.samples} samples per model from {_prompt_desc(ev)}, seeds {ev.seed}.."
        f"{ev.seed + ev.samples - 1}; metrics {', '.join(ev.metrics)}"
        + (f"; reference {ev.reference}" if ev.reference else "")
    )


def _recovery_text(r: dict) -> str:
    what = f"LoRA rank {r['rank']}" if r["mode"] == "lora" else "full fine-tuning"
    return f"{what}, {r['steps']} steps, lr {r['lr']:g}, objective {r['objective']}"


def _runstext_table(specs: list, done: set[str] | None = None) -> str:
    headers = ["model", "method", "ratio", "seed", "record"] + (["status"] if done is not None else [])
    rows = []
    for s in specs:
        row = [s.model, s.record_method, _fmt_ratio(s.ratio), s.seed, s.short()]
        if done is not None:
            row.append("done" if s.record_id in done else "to do")
        rows.append(row)
    return text_table(headers, rows)


def _done_records(plan) -> set[str] | None:
    """Record ids already stored with status ok (None when there is no store yet)."""
    path = plan.layout.store
    if not path.is_file():
        return None
    try:
        from ecodiff_bench.core.store import Store

        with Store(path, readonly=True) as store:
            return {s.record_id for s in plan.specs if store.has_ok(s.record_id)}
    except Exception as exc:  # a damaged store must not hide the plan
        click.echo(f"note: could not read the store {path}: {exc}", err=True)
        return None


def _exit_code(result: Any) -> int:
    if isinstance(result, bool):
        return 0 if result else 1
    if isinstance(result, int):
        return result
    return 0


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


@main.command("validate")
@click.argument("suite", metavar="SUITE")
@click.option("--smoke", is_flag=True, help="Show the runs as --smoke would shrink them.")
@click.option("--json", "as_json", is_flag=True, help="Print the expanded run specs as JSON.")
def validate_cmd(suite: str, smoke: bool, as_json: bool) -> None:
    """Check SUITE (a file or a builtin name) and list the runs it expands to."""
    from ecodiff_bench.suite import expand

    s = _load(suite)
    plan = expand(s, smoke=smoke)
    if as_json:
        click.echo(json.dumps([sp.model_dump(mode="json") for sp in plan.specs], indent=2))
        return
    click.echo(_summary(plan, s.description))
    click.echo("")
    click.echo(_runstext_table(plan.specs))


def _ls_rows(kind: str) -> list[dict]:
    """What ``ls KIND`` lists, one dict per entry."""
    from ecodiff_bench import suite as S

    if kind == "models":
        from ecodiff_bench.models import MODELS

        return [
            {
                "name": m.name,
                "family": m.family,
                "default_source": m.ref.kind,
                "hub_id": getattr(m.ref, "repo", None),
                "description": MODELS.help(m.name),
            }
            for m in map(MODELS.get, MODELS.names())
        ]
    if kind == "methods":
        return [{"name": n, "description": S.METHODS.help(n)} for n in S.METHODS.names()]
    if kind == "metrics":
        from ecodiff_bench.core.metrics import METRICS

        return [
            {
                "name": m.name,
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
                "delta": m.delta,
                "measured": m.stage,
                "description": m.help,
            }
            for m in map(METRICS.get, METRICS)
        ]
    rows = []
    for name, path in S.builtin_suites().items():
        try:
            desc = S.load_suite(path).description
        except (SuiteError, UnknownNameError) as exc:
            desc = f"(invalid: {str(exc).splitlines()[0]})"
        rows.append({"name": name, "path": str(path), "description": desc})
    return rows


@main.command("ls")
@click.argument("what", required=False, type=click.Choice(LS_KINDS))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {kind: [entries]}.")
def ls_cmd(what: str | None, as_json: bool) -> None:
    """List models, methods, metrics or suites (all of them without an argument)."""
    kinds = [what] if what else list(LS_KINDS)
    if as_json:
        click.echo(json.dumps({kind: _ls_rows(kind) for kind in kinds}, indent=1))
        return
    columns = {
        "models": [
            ("name", "name"),
            ("family", "family"),
            ("default source", "source"),
            ("description", "description"),
        ],
        "methods": [("name", "name"), ("description", "description")],
        "metrics": [
            ("name", "name"),
            ("unit", "unit"),
            ("measured", "measured"),
            ("description", "description"),
        ],
        "suites": [("name", "name"), ("description", "description")],
    }
    when = {
        "always": "always",
        "evaluation": "evaluation.metrics",
        "pruned": "pruned models",
        "compile": "performance.inference.compile",
    }
    for i, kind in enumerate(kinds):
        if len(kinds) > 1:
            click.echo(("\n" if i else "") + f"{kind}:")
        rows = _ls_rows(kind)
        for r in rows:
            r["source"] = r.get("default_source", "") + (f" ({r['hub_id']})" if r.get("hub_id") else "")
            r["measured"] = when.get(r.get("measured"), "")
        if not rows:
            click.echo(f"no {kind} found")
            continue
        cols = columns[kind]
        click.echo(text_table([h for h, _ in cols], [[r[k] for _, k in cols] for r in rows]))


def _planned(suite_ref: str, only: tuple[str, ...], smoke: bool, out: Path | None):
    """The loaded suite (its ``--only`` models) and its run plan (``--smoke``, ``--out`` applied)."""
    from ecodiff_bench.suite import expand

    s = _load(suite_ref).select(only=list(only) or None)
    return s, expand(s, smoke=smoke, out=out)


@main.command("run")
@click.argument("suite", metavar="[SUITE]", required=False, default=DEFAULT_SUITE)
@click.option(
    "--smoke",
    is_flag=True,
    help="Shrink samples, repetitions, epochs and calibration (see the suite's "
    "smoke section); results are marked as smoke runs.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (overrides the suite's outputs.dir).",
)
@click.option("--only", multiple=True, metavar="MODEL", help="Run only this model of the suite (repeatable).")
@click.option(
    "--dry-run", is_flag=True, help="Validate, list the runs (and which are already stored), run nothing."
)
@click.option(
    "--wait",
    is_flag=True,
    help="If another run is using the same store, wait for it to finish (default: refuse at once).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print what the run did as JSON on stdout (progress on stderr)."
)
def run_cmd(
    suite: str,
    smoke: bool,
    out: Path | None,
    only: tuple[str, ...],
    dry_run: bool,
    wait: bool,
    as_json: bool,
) -> None:
    """Prune and benchmark every model of SUITE (default: the embedded 'digits' suite).

    Runs whose record already exists in the store are skipped, so an interrupted run resumes.
    """
    s, plan = _planned(suite, only, smoke, out)
    if dry_run:
        if as_json:
            done = _done_records(plan) or set()
            rows = [
                {
                    "record_id": sp.record_id,
                    "model": sp.model,
                    "method": sp.record_method,
                    "ratio": sp.ratio,
                    "seed": sp.seed,
                    "done": sp.record_id in done,
                }
                for sp in plan.specs
            ]
            click.echo(json.dumps({"suite": plan.suite, "dry_run": True, "runs": rows}, indent=1))
            return
        click.echo(_summary(plan, s.description))
        click.echo("")
        click.echo(_runstext_table(plan.specs, _done_records(plan)))
        click.echo("\n(dry run: nothing was executed)")
        return
    from ecodiff_bench.run import run_suite

    summary: dict | None = {"suite": plan.suite, "smoke": smoke} if as_json else None
    with _process_group() as world:
        code = _exit_code(run_suite(plan, wait=wait, summary=summary))
    if summary is not None and world.writer:
        click.echo(json.dumps({**summary, "exit_code": code, "world_size": world.size}, indent=1))
    click.get_current_context().exit(code)


@contextmanager
def _process_group():
    """Under torchrun / accelerate launch: this process's place in the launcher's process group (joined
    here, left at the end). Alone: a world of one."""
    from ecodiff_bench.run import distributed

    world = distributed.init_from_env()
    try:
        yield world
    except distributed.PeerFailed as exc:  # the failing rank says why; this one only stops with it
        raise click.ClickException(str(exc)) from None
    finally:
        distributed.shutdown()


@main.command("prune")
@click.argument("suite", metavar="SUITE")
@click.option(
    "--smoke", is_flag=True, help="Shrink epochs and calibration as the suite's smoke section says."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (overrides the suite's outputs.dir).",
)
@click.option(
    "--only", multiple=True, metavar="MODEL", help="Prune only this model of the suite (repeatable)."
)
def prune_cmd(suite: str, smoke: bool, out: Path | None, only: tuple[str, ...]) -> None:
    """Compute and save the pruned models of SUITE without benchmarking them."""
    from ecodiff_bench.run import prune_suite

    _, plan = _planned(suite, only, smoke, out)
    with _process_group():
        code = prune_suite(plan)
    click.get_current_context().exit(_exit_code(code))


@main.group("zoo", cls=_Group)
def zoo_group() -> None:
    """The digits model zoo: small models trained on scikit-learn's digits."""


@zoo_group.command("ls")
def zoo_ls_cmd() -> None:
    """List the zoo's models and whether they are built."""
    from ecodiff_bench import zoo

    rows = [
        [m["name"], m["family"], m["teacher"], "built" if m["available"] else "not built"]
        for m in zoo.list_models()
    ]
    click.echo(text_table(["name", "family", "teacher", "status"], rows))


@zoo_group.command("train")
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the model (default: the zoo's shipped location).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
def zoo_train_cmd(name: str, out: Path | None, seed: int) -> None:
    """Train zoo model NAME from its recipe (CPU; minutes)."""
    from ecodiff_bench import zoo

    if name not in zoo.ZOO_NAMES:
        raise UnknownNameError("zoo model", name, zoo.ZOO_NAMES)
    path = zoo.train(name, out, seed=seed)
    click.echo(f"wrote {path}")


results.register(main)

if __name__ == "__main__":  # pragma: no cover
    main()
