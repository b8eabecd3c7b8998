"""ecodiff-bench: the benchmark harness and CLI (see ecodiff_bench.cli). Importing it loads no torch."""

import os

# OpenMP threads that spin while waiting turn a shared or oversubscribed CPU into a 50-100x slowdown
# (measured here: 65 s instead of 0.7 s for one digits batch on 2 busy cores). Sleeping waits cost
# nothing measurable when the cores are free. Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
