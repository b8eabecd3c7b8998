"""The ``ecodiff-bench`` command line: :mod:`.main` (the group; validate, ls, run, prune, zoo) and
:mod:`.results` (history, compare, export, report, tag, check: store-only, torch-free)."""

from ecodiff_bench.cli.main import main

__all__ = ["main"]
