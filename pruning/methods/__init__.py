"""Pruning methods. Each scores every unit (higher = more important); plans are built from the scores."""

from .ecodiff import EcoDiffConfig, TrainingDiverged, ecodiff_scores
from .simple import magnitude_scores, random_scores
from .taylor import TaylorConfig, taylor_scores

METHODS = {
    "ecodiff": "learned hard-concrete masks, end-to-end trajectory objective (EcoDiff)",
    "taylor": "first-order Taylor importance over low-noise timesteps (Diff-Pruning)",
    "magnitude": "mean absolute weight of each unit",
    "random": "uniformly random scores (seeded)",
}
DATA_FREE = ("magnitude", "random")

__all__ = [
    "METHODS", "DATA_FREE", "EcoDiffConfig", "TaylorConfig", "TrainingDiverged",
    "ecodiff_scores", "taylor_scores", "magnitude_scores", "random_scores",
]
