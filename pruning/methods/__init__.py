"""Pruning methods. Each scores every unit (higher = more important); plans are built from the scores."""

from .ecodiff import EcoDiffConfig, ecodiff_scores
from .ecodiff import plan_summary as ecodiff_plan_summary
from .mask_training import TrainingDiverged
from .simple import magnitude_scores, random_scores
from .taylor import TaylorConfig, taylor_scores

METHODS = {
    "ecodiff": "learned hard-concrete masks, end-to-end trajectory objective (EcoDiff)",
    "taylor": "first-order Taylor importance over low-noise timesteps (Diff-Pruning)",
    "magnitude": "mean absolute weight of each unit",
    "random": "uniformly random scores (seeded)",
}
DATA_FREE = ("magnitude", "random")
# Methods whose scores belong to one pruning ratio (masks trained to it), unless an option says otherwise:
# method -> (option, value) that makes its scores serve every ratio.
RATIO_SPECIFIC = {"ecodiff": ("controller", "none")}

__all__ = [
    "METHODS", "DATA_FREE", "RATIO_SPECIFIC", "EcoDiffConfig", "TaylorConfig", "TrainingDiverged",
    "ecodiff_scores", "ecodiff_plan_summary", "taylor_scores", "magnitude_scores", "random_scores",
]
