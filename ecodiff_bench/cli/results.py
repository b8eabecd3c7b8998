"""Result commands of the ``ecodiff-bench`` CLI: history, compare, export, report, tag, check (and
``releases``, in :mod:`ecodiff_bench.cli.releases`).

They read (and, for ``tag``, label) the results store; none of them imports torch. The main click group
adds them with :func:`register`. Usage errors exit with code 2 and a message naming the argument;
``check`` exits 1 when the candidate regresses.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecodiff_bench.cli.options import (
    check_metric_options,
    open_store,
    store_option,
    writable_dir,
    writable_file,
)
from ecodiff_bench.core.errors import StoreDamagedError, StoreError
from ecodiff_bench.core.export import EXPORT_FORMATS, LAYOUTS, export_records
from ecodiff_bench.core.hashing import short
from ecodiff_bench.core.record import RECORD_STATUSES
from ecodiff_bench.core.store import Store
from ecodiff_bench.core.tables import text_table


def _check_tag(store: Store, tag: str | None) -> None:
    """``--tag``: None, or a release tag the store holds."""
    if tag is not None:
        names = store.tag_names()
        if tag not in names:
            raise click.BadParameter(
                f"unknown release tag {tag!r}; known: {', '.join(names) or 'none'}", param_hint="--tag"
            )


def _resolve(store: Store, ref: str, param: str, include_smoke: bool = True) -> tuple[str, list[dict]]:
    """A release tag, a run id, or a record id (or unique prefix of one) -> (description, records)."""
    if ref in store.tag_names():
        return f"release {ref}", store.tagged(ref)
    recs = store.records(run_id=ref, include_smoke=include_smoke)
    if recs:
        return f"run {ref}", recs
    rec = store.get(ref)
    if rec is None:
        ids = [r["record_id"] for r in store.records(include_smoke=True) if r["record_id"].startswith(ref)]
        if len(ids) == 1:
            rec = store.get(ids[0])
        elif len(ids) > 1:
            raise click.BadParameter(
                f"{ref!r} is a prefix of {len(ids)} record ids; give more characters", param_hint=param
            )
    if rec is not None:
        return f"record {rec['record_id']}", [rec]
    tags = ", ".join(store.tag_names()) or "none"
    runs = ", ".join(store.run_ids()[:8]) or "none"
    raise click.BadParameter(
        f"{ref!r} is not a release tag, run id or record id. Tags: {tags}. Recent runs: {runs}.",
        param_hint=param,
    )


# -- history -------------------------------------------------------------------------------------------
@click.command("history", short_help="List past runs, records and releases.")
@store_option
@click.option("--suite", default=None, help="Only this suite.")
@click.option("--model", default=None, help="Only this model (with --records).")
@click.option("--records", "show_records", is_flag=True, help="List records instead of runs.")
@click.option("--include-smoke", is_flag=True, help="Also list smoke records (with --records).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def history_cmd(store_path, suite, model, show_records, include_smoke, limit, as_json):
    """List past runs (newest first), or their records, and the release tags."""
    store = open_store(store_path)
    if show_records:
        _history_records(store, suite, model, include_smoke, limit, as_json)
    else:
        _history_runs(store, suite, limit, as_json)


def _history_records(store: Store, suite, model, include_smoke: bool, limit: int, as_json: bool) -> None:
    """``history --records``: the newest records, one row each."""
    recs = store.records(suite=suite, model=model, include_smoke=include_smoke)[::-1][:limit]
    if as_json:
        click.echo(json.dumps(recs, indent=1))
        return
    rows = [
        [
            r["created_at"],
            r["run_id"],
            short(r["record_id"]),
            r["model"],
            r["method"],
            f"{r['ratio']:g}",
            r.get("seed"),
            "yes" if r["smoke"] else "",
            r["status"],
        ]
        for r in recs
    ]
    headers = ["created", "run", "record", "model", "method", "ratio", "seed", "smoke", "status"]
    click.echo(text_table(headers, rows))
    if not include_smoke and (n := store.count_smoke(suite=suite, model=model)):
        click.echo(f"({n} smoke record(s) hidden; --include-smoke shows them)")


def _history_runs(store: Store, suite, limit: int, as_json: bool) -> None:
    """``history``: the newest runs, then the release tags."""
    runs = [r for r in store.runs() if suite is None or r["suite"] == suite][:limit]
    if as_json:
        click.echo(json.dumps({"runs": runs, "tags": store.tags()}, indent=1))
        return
    if not runs:
        click.echo("No runs stored yet.")
        return
    click.echo(
        text_table(
            ["run", "suite", "started", "records", "ok", "failed", "smoke", "models", "tags"],
            [
                [
                    r["run_id"],
                    r["suite"],
                    r["started"],
                    r["records"],
                    r["ok"],
                    r["failed"],
                    r["smoke"],
                    ",".join(r["models"]),
                    ",".join(r["tags"]),
                ]
                for r in runs
            ],
        )
    )
    tags = store.tags()
    if tags:
        click.echo("\nReleases:")
        click.echo(
            text_table(
                ["tag", "created", "records", "runs", "smoke"],
                [[t["name"], t["created_at"], t["records"], ",".join(t["runs"]), t["smoke"]] for t in tags],
            )
        )


# -- compare -------------------------------------------------------------------------------------------
@click.command("compare", short_help="Compare two releases, runs or records.")
@click.argument("a")
@click.argument("b")
@store_option
@click.option("--metric", "metrics", multiple=True, help="Only these metrics (repeatable). Default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
def compare_cmd(a, b, store_path, metrics, as_json):
    """Compare A with B (each a release tag, run id or record id), matched by model/method/ratio.

    Shows B - A per metric (seeds averaged); 'better'/'worse' follows each metric's direction.
    """
    from reports.gate import diff

    check_metric_options(metrics)
    store = open_store(store_path)
    desc_a, recs_a = _resolve(store, a, "A")
    desc_b, recs_b = _resolve(store, b, "B")
    smoke_a = {r["smoke"] for r in recs_a}
    smoke_b = {r["smoke"] for r in recs_b}
    if smoke_a != smoke_b or len(smoke_a) > 1:
        click.echo(
            f"WARNING: comparing smoke and full records ({desc_a}: smoke={sorted(smoke_a)}, "
            f"{desc_b}: smoke={sorted(smoke_b)}); the numbers are not comparable.",
            err=True,
        )
    changes = diff(recs_a, recs_b, list(metrics) or None)
    if as_json:
        click.echo(
            json.dumps({"a": desc_a, "b": desc_b, "changes": [c.to_dict() for c in changes]}, indent=1)
        )
        return
    rows = []
    for c in changes:
        if c.metric == "*":
            rows.append(
                [c.config, "*", "missing" if c.a is None else "", "missing" if c.b is None else "", "", ""]
            )
            continue
        change = ""
        if c.change is not None:
            change = f"{c.change:+.4g}" + (f" ({100 * c.change_frac:+.1f}%)" if c.a.value else "")
        name = f"{c.metric} [{c.unit}]" if c.unit else c.metric
        rows.append([c.config, name, c.a.text(), c.b.text(), change, c.verdict])
    click.echo(f"A = {desc_a} ({len(recs_a)} record(s)); B = {desc_b} ({len(recs_b)} record(s))")
    click.echo(text_table(["config", "metric", "A", "B", "B - A", "verdict"], rows))


# -- export --------------------------------------------------------------------------------------------
@click.command("export", short_help="Export records to csv/json/jsonl/parquet.")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default=None,
    help="Default: from OUT's suffix. csv/json/parquet: one flat row per record; jsonl: full records.",
)
@click.option("--suite", default=None)
@click.option("--run-id", default=None)
@click.option("--model", default=None)
@click.option("--tag", default=None, help="Only the records of this release.")
@click.option("--status", type=click.Choice(RECORD_STATUSES), default=None)
@click.option(
    "--include-smoke", is_flag=True, help="Also export smoke records (column 'smoke' tells them apart)."
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="wide",
    show_default=True,
    help="wide: one row per record; long: one tidy row per record and metric.",
)
@click.option(
    "--skip-damaged",
    is_flag=True,
    help="Export the records that can still be read from a damaged store, and list the others.",
)
def export_cmd(out, store_path, fmt, suite, run_id, model, tag, status, include_smoke, layout, skip_damaged):
    """Export records to OUT (csv, json, jsonl or parquet), with percentiles, confidence intervals and
    energy in Wh per 1,000 images."""
    if fmt is None:
        fmt = out.suffix.lstrip(".").lower()
        if fmt not in EXPORT_FORMATS:
            raise click.BadParameter(
                f"cannot tell the format from {out.name!r}; use a suffix or --format "
                f"({', '.join(EXPORT_FORMATS)})",
                param_hint="OUT",
            )
    writable_file(out, "OUT")
    store = open_store(store_path)
    filters = {"suite": suite, "run_id": run_id, "model": model, "tag": tag, "status": status}
    _check_tag(store, tag)
    damaged: list[tuple[str, str]] = []
    if skip_damaged:
        recs, damaged = store.readable_records(**filters, include_smoke=include_smoke)
    else:
        recs = store.records(**filters, include_smoke=include_smoke)
    try:
        export_records(recs, out, fmt, layout)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out}: {exc.strerror or exc}", param_hint="OUT") from None
    click.echo(
        f"Wrote {len(recs)} record(s) to {out} ({fmt}, {layout if fmt != 'jsonl' else 'full records'})."
    )
    for rid, why in damaged:
        click.echo(f"skipped damaged record {rid}: {why}", err=True)
    if damaged:
        click.echo(f"({len(damaged)} damaged record(s) could not be read and were left out)", err=True)
    if not include_smoke and not skip_damaged:
        n = store.count_smoke(**filters)
        if n:
            click.echo(f"({n} matching smoke record(s) left out; --include-smoke adds them)")


# -- report --------------------------------------------------------------------------------------------
@click.command("report", short_help="Render HTML and Markdown reports.")
@store_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/report"),
    show_default=True,
    help="Folder for report.html, report.md and assets/.",
)
@click.option("--suite", default=None)
@click.option("--run-id", default=None)
@click.option("--tag", default=None, help="Report on this release.")
@click.option(
    "--include-smoke/--exclude-smoke",
    default=None,
    help="Default: full records, or smoke ones when a run/tag is selected or nothing else matches.",
)
@click.option("--title", default=None)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["html", "md"]),
    multiple=True,
    help="Formats to write (repeatable). Default: html and md.",
)
@click.option(
    "--releases/--no-releases",
    default=None,
    help="The 'Release history' section: the tagged releases of the report's suites, each gated against "
    "the previous one. Default: shown when the store holds such releases; --releases requires them.",
)
def report_cmd(store_path, out_dir, suite, run_id, tag, include_smoke, title, formats, releases):
    """Render the HTML and Markdown reports from the store (from any working directory: artifact paths
    are relative to the store's folder)."""
    import reports

    store = open_store(store_path)
    if run_id is not None and run_id not in store.run_ids():
        raise click.BadParameter(
            f"unknown run id {run_id!r}; recent runs: {', '.join(store.run_ids()[:8]) or 'none'}",
            param_hint="--run-id",
        )
    _check_tag(store, tag)
    writable_dir(out_dir, "--out")
    try:
        paths = reports.render(
            store,
            out_dir,
            suite=suite,
            run_id=run_id,
            tag=tag,
            include_smoke=include_smoke,
            title=title,
            formats=formats or ("html", "md"),
            releases=releases,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    names = {"html": "HTML report", "markdown": "Markdown report"}
    click.echo("\n".join(f"{names[k]}: {v}" for k, v in paths.items()))


# -- tag -----------------------------------------------------------------------------------------------
@click.command("tag", short_help="Name a set of records a release.")
@click.argument("name")
@store_option
@click.option("--run-id", default=None, help="Tag every record of this run.")
@click.option("--record", "record_ids", multiple=True, help="Tag this record id (repeatable).")
@click.option("--replace", is_flag=True, help="Replace an existing tag of that name.")
def tag_cmd(name, store_path, run_id, record_ids, replace):
    """Name a set of records a release (for `check --baseline/--candidate`)."""
    if (run_id is None) == (not record_ids):
        raise click.UsageError("give either --run-id RUN or one or more --record ID")
    store = open_store(store_path, write=True)
    try:
        ids = store.tag(name, list(record_ids) if record_ids else None, run_id=run_id, replace=replace)
    except StoreDamagedError:
        raise
    except StoreError as exc:
        raise click.BadParameter(str(exc), param_hint="--run-id" if run_id else "--record") from None
    click.echo(f"Tagged {len(ids)} record(s) as {name!r}.")


# -- check (regression gate) ---------------------------------------------------------------------------
def _thresholds_file(ref: str) -> Path:
    """A thresholds/suite file, or the name of a builtin suite (``digits``) whose file holds them."""
    from ecodiff_bench.core.errors import SuiteError
    from ecodiff_bench.core.registry import UnknownNameError
    from ecodiff_bench.suite import resolve_suite_path

    if Path(ref).suffix in (".json", ".yaml", ".yml") and not Path(ref).expanduser().is_file():
        raise click.BadParameter(
            f"file not found: {Path(ref).expanduser().resolve()}", param_hint="--thresholds"
        )
    try:
        return resolve_suite_path(ref)
    except (SuiteError, UnknownNameError) as exc:
        raise click.BadParameter(
            f"{exc} (a YAML/JSON thresholds file or a builtin suite name)", param_hint="--thresholds"
        ) from None


def load_thresholds(path: Path | str):
    """Thresholds from a YAML/JSON file: the mapping itself, or under 'thresholds' or 'regression: thresholds'
    (the suite YAML's place for them). A builtin suite's name stands for its file."""
    from ecodiff_bench.core.thresholds import validate_thresholds
    from ecodiff_bench.core.yamlfile import YamlError, read_yaml

    path = _thresholds_file(str(path))

    try:
        data = read_yaml(path)
    except YamlError as exc:
        raise click.BadParameter(str(exc), param_hint="--thresholds") from None
    if isinstance(data, dict):
        for section in ("regression", "gate"):  # a suite YAML keeps them under regression.thresholds
            if isinstance(data.get(section), dict) and "thresholds" in data[section]:
                data = data[section]["thresholds"]
                break
        else:
            if "thresholds" in data:
                data = data["thresholds"]
    try:
        return validate_thresholds(data)
    except ValueError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--thresholds") from None


@click.command("check", short_help="Regression gate vs a baseline release.")
@store_option
@click.option("--baseline", default=None, help="Baseline release tag (or run id).")
@click.option(
    "--against",
    type=click.Choice(["previous"]),
    default=None,
    help="Instead of --baseline: the most recent release of the candidate's suite tagged before it.",
)
@click.option("--candidate", default=None, help="Candidate release tag (or run id).")
@click.option("--run-id", default=None, help="Use this run as the candidate.")
@click.option(
    "--thresholds",
    "thresholds_path",
    metavar="FILE|SUITE",
    default=None,
    help="YAML/JSON thresholds, a suite YAML or a builtin suite name (its regression.thresholds). "
    "Default: the thresholds of the suite the baseline was run with, else built-in ones.",
)
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JUnit XML here."
)
@click.option("--strict", is_flag=True, help="Metrics that cannot be compared fail the gate.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (exit codes unchanged).")
def check_cmd(store_path, baseline, against, candidate, run_id, thresholds_path, junit, strict, as_json):
    """Regression gate: exit 1 if the candidate regresses against the baseline beyond the thresholds, or
    a value lies outside its threshold's absolute window.

    Timings of pruned models are compared through their paired ratio to the base of the same run, and
    a change counts only when its whole confidence interval lies beyond the threshold. With
    --against previous the baseline is the release tagged before the candidate in its suite.
    """
    from reports.gate import IncomparableError
    from reports.gate import check as gate_check

    say = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo

    if candidate is not None and run_id is not None:
        raise click.UsageError("give --candidate RELEASE or --run-id RUN, not both")
    if (baseline is None) == (against is None):
        raise click.UsageError(
            "give --baseline RELEASE (or run id) or --against previous"
            + (", not both" if baseline is not None else "")
        )
    if junit is not None:
        writable_file(junit, "--junit")
    store = open_store(store_path)
    thresholds = load_thresholds(thresholds_path) if thresholds_path else None
    if baseline is not None:
        desc_b, base_recs = _resolve_release(store, baseline, "--baseline")
    desc_c, cand_recs = _candidate(store, candidate, run_id, say)
    if against is not None:
        desc_b, base_recs = _previous_release(store, cand_recs, candidate, desc_c)
        say(f"Baseline: {desc_b} (the release of the same suite tagged before {desc_c})")
    try:
        result = gate_check(
            cand_recs, base_recs, thresholds, strict=strict, baseline_name=desc_b, candidate_name=desc_c
        )
    except IncomparableError as exc:
        raise click.UsageError(f"cannot compare {desc_c} with {desc_b}: {exc}") from None
    if junit is not None:
        result.write_junit(junit)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "junit": str(junit) if junit else None}, indent=1))
    else:
        click.echo(result.table())
        if junit is not None:
            click.echo(f"JUnit XML: {junit}")
    if not result.passed:
        click.get_current_context().exit(1)


def _candidate(store: Store, candidate: str | None, run_id: str | None, say) -> tuple[str, list[dict]]:
    """The gate's candidate: ``--candidate`` (a release or run), ``--run-id``, else the latest full run."""
    if candidate is None and run_id is None:
        runs = [r for r in store.runs() if r["smoke"] is False]
        if not runs:
            raise click.UsageError(
                "no full (non-smoke) run in the store to use as candidate; give --candidate or --run-id"
            )
        run_id = runs[0]["run_id"]
        say(f"Candidate: latest full run {run_id}")
    if run_id is None:
        return _resolve_release(store, candidate, "--candidate")
    recs = store.records(run_id=run_id, include_smoke=True)
    if not recs:
        raise click.BadParameter(
            f"unknown run id {run_id!r}; recent runs: {', '.join(store.run_ids()[:8])}",
            param_hint="--run-id",
        )
    return f"run {run_id}", recs


def _previous_release(store: Store, cand_recs: list[dict], candidate: str | None, desc_c: str):
    """``--against previous``: the release tagged before the candidate in its series (suite, smoke or not)."""
    from reports.releases import Release, load_releases, previous_release

    name = candidate if candidate in store.tag_names() else None
    prev = previous_release(load_releases(store), cand_recs, name)
    if prev is None:
        suite, smoke = Release("", "", cand_recs).series
        kind = "smoke" if smoke else "full"
        raise click.UsageError(
            f"--against previous: no {kind} release of suite {suite!r} was tagged before {desc_c}; "
            "tag one (ecodiff-bench tag NAME --run-id RUN) or give --baseline"
        )
    return f"release {prev.name}", prev.records


def _resolve_release(store: Store, ref: str, param: str) -> tuple[str, list[dict]]:
    if ref in store.tag_names():
        return f"release {ref}", store.tagged(ref)
    recs = store.records(run_id=ref, include_smoke=True)
    if recs:
        return f"run {ref}", recs
    raise click.BadParameter(
        f"{ref!r} is neither a release tag nor a run id. Tags: "
        f"{', '.join(store.tag_names()) or 'none'}. Recent runs: "
        f"{', '.join(store.run_ids()[:8]) or 'none'}.",
        param_hint=param,
    )


COMMANDS = (history_cmd, compare_cmd, export_cmd, report_cmd, tag_cmd, check_cmd)


def register(group: click.Group) -> None:
    """Add the result commands (and ``releases``, :mod:`ecodiff_bench.cli.releases`) to the main group."""
    from ecodiff_bench.cli.releases import releases_cmd

    for cmd in (*COMMANDS, releases_cmd):
        group.add_command(cmd)
