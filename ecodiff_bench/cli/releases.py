"""``ecodiff-bench releases``: the tagged releases in order, each gated against the one before it.

The history itself (which releases form a series, what is compared, the verdicts) is
:mod:`reports.releases`, which asks the regression gate for every verdict. This module only prints it.
Torch-free, like the other result commands.
"""

from __future__ import annotations

import json

import click

from ecodiff_bench.cli.options import check_metric_options, open_store, store_option
from ecodiff_bench.core.tables import text_table


def print_series(series, metrics: list[str]) -> None:
    from reports.releases import RELEASE_HEADER, metric_heading, metric_rows, regression_lines, release_rows

    click.echo(f"Releases of suite {series.title}, oldest first:")
    click.echo(text_table(RELEASE_HEADER, release_rows(series)))
    for line in regression_lines(series):
        click.echo(f"  {line}")
    for metric in metrics:
        if metric not in series.points:
            continue
        click.echo("")
        click.echo(metric_heading(series, metric))
        rows = metric_rows(series, metric)
        click.echo(text_table(["config", *series.releases], rows) if rows else "  (no values)")


@click.command("releases", short_help="Tagged releases in order, each gated against the previous one.")
@store_option
@click.option("--suite", default=None, help="Only this suite's releases.")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="Only these gated metrics' tables (repeatable). Default: every gated metric.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def releases_cmd(store_path, suite, metrics, as_json):
    """List the tagged releases in order (date, suite, models, methods, ratios, git commit), each checked
    by the regression gate against the release before it, and per gated metric the value of every
    model/method/ratio in each release with its change and the gate's verdict."""
    from reports.releases import LEGEND, history, load_releases

    check_metric_options(metrics)
    store = open_store(store_path)
    rels = load_releases(store)
    known = sorted({s for r in rels for s in r.suite.split("+")})
    if suite is not None and suite not in known:
        raise click.BadParameter(
            f"no release of suite {suite!r}; suites with releases: {', '.join(known) or 'none'}",
            param_hint="--suite",
        )
    hist = history(rels, [suite] if suite else None)
    gated = sorted({m for s in hist.series for m in s.metrics})
    for m in metrics:
        if gated and m not in gated:
            raise click.BadParameter(
                f"{m!r} is not gated by any release's thresholds; gated metrics: {', '.join(gated)}",
                param_hint="--metric",
            )
    if as_json:
        data = hist.to_dict()
        if metrics:
            for s in data["series"]:
                s["metrics"] = {k: v for k, v in s["metrics"].items() if k in metrics}
        click.echo(json.dumps(data, indent=1))
        return
    if not hist.series:
        click.echo("No tagged releases yet (name one with: ecodiff-bench tag NAME --run-id RUN).")
        return
    click.echo(LEGEND)
    for i, series in enumerate(hist.series):
        if i:
            click.echo("")
        print_series(series, list(metrics) or series.metrics)
