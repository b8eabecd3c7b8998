"""Running a suite: load each model, measure its base, prune per method and ratio, measure, store, report.

* :mod:`.runner`      ``run_suite`` / ``prune_suite``: the loop over models and specs, resumable
* :mod:`.scorer`      method scores, computed once per method and shared by its ratios (cached on disk)
* :mod:`.evaluate`    measuring one pipeline: size, FLOPs, latency, memory, energy, carbon, quality
* :mod:`.quality_setup` the suite's quality metrics, set up once per model
* :mod:`.records`     the run records a spec produces
* :mod:`.model_card`  a pruned model's card, rewritten with its measured figures
* :mod:`.provenance`  code version, packages, machine, GPU, driver, power limit
* :mod:`.distributed` several processes (torchrun / accelerate launch): process group, rank 0 the writer
"""

from ecodiff_bench.run.runner import prune_suite, run_suite

__all__ = ["prune_suite", "run_suite"]
