"""Kept only for :mod:`ecodiff_bench.zoo`, which imports ``UnknownNameError`` from here (the zoo is being
retrained in another change); everything else imports :mod:`ecodiff_bench.core.registry`. Remove this
module when the zoo does."""

from ecodiff_bench.core.registry import UnknownNameError

__all__ = ["UnknownNameError"]
