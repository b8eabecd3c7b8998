"""Options and checks the result commands share (``history``, ``compare``, ``export``, ``report``,
``tag``, ``check`` in :mod:`.results`; ``releases`` in :mod:`.releases`): the ``--store`` option and
opening the store, ``--metric`` names, and output paths checked before any work. Torch-free."""

from __future__ import annotations

from pathlib import Path

import click

from ecodiff_bench.core.errors import StoreError
from ecodiff_bench.core.store import DEFAULT_STORE_ENV, Store, default_store_path

_STORE_HELP = f"Results store (SQLite). Default: ${DEFAULT_STORE_ENV} or results/store.sqlite."


def store_option(f):
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar=DEFAULT_STORE_ENV,
        show_envvar=True,
        help=_STORE_HELP,
    )(f)


class StoreProblem(click.ClickException):
    """A store that cannot be used: exit code 2 and the message (which names the file), no usage text."""

    exit_code = 2


def open_store(store_path: Path | None, *, write: bool = False) -> Store:
    """The store, read-only unless ``write`` (only ``tag`` writes)."""
    path = store_path or default_store_path()
    try:
        return Store(path, create=False, readonly=not write)
    except StoreError as exc:
        raise StoreProblem(f"--store: {exc}") from None


def writable_file(path: Path, param: str) -> Path:
    """Check that ``path`` can be written (its folder exists or can be made) before any work is done."""
    from ecodiff_bench.core.paths import check_writable_file

    try:
        return check_writable_file(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


def writable_dir(path: Path, param: str) -> Path:
    """Check that the folder ``path`` can be written (made if needed) before any work is done."""
    from ecodiff_bench.core.paths import check_writable_dir

    try:
        return check_writable_dir(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


def check_metric_options(metrics) -> None:
    """``--metric`` values: each a name the metric catalog knows."""
    from ecodiff_bench.core.thresholds import check_metric_name

    for m in metrics:
        try:
            check_metric_name(m)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metric") from None
