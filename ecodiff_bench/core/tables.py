"""Plain-text tables for the terminal and for logs (rich does the layout; no colour, no wrapping)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

from rich.box import Box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Columns separated by spaces, one line of dashes under the header: readable, and grep/diff friendly.
_HEADER_RULE = Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """``rows`` under ``headers`` as aligned text; ``None`` shows as empty, cells are never wrapped."""
    table = Table(
        box=_HEADER_RULE,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="",
        highlight=False,
    )
    for header in headers:
        table.add_column(Text(str(header)), no_wrap=True)
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console = Console(
        file=io.StringIO(), width=1_000_000, color_system=None, force_terminal=False, soft_wrap=True
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())
