"""``python -m ecodiff_bench`` runs the ``ecodiff-bench`` command line."""

from ecodiff_bench.cli import main

if __name__ == "__main__":
    main(prog_name="ecodiff-bench")
