"""The harness's torch-free core: what a measured value, a metric, a run record and the store are.

``reports`` and the CLI's result commands import only this package; nothing here imports torch.

* :mod:`.values`      Value: a number with its unit, direction and status (never a silent zero)
* :mod:`.registry`    named registries and the one "did you mean" helper
* :mod:`.errors`      exceptions for user mistakes (exit code 2 in the CLI)
* :mod:`.metrics`     the metric catalog: one MetricSpec per metric (unit, direction, delta, combine, interval)
* :mod:`.thresholds`  regression thresholds (suite, ``check`` and the gate share the schema)
* :mod:`.record`      RunRecord, the typed run record (its docstring is the record contract)
* :mod:`.store`       the SQLite results store;  :mod:`.export`: flat rows and export files
* :mod:`.files`, :mod:`.yamlfile`, :mod:`.tables`  atomic writes, the YAML reader, text tables
"""

from ecodiff_bench.core.errors import RecordError, StoreError, SuiteError, UnknownNameError
from ecodiff_bench.core.metrics import METRICS, MetricSpec, metric
from ecodiff_bench.core.record import RunRecord, normalize_record
from ecodiff_bench.core.registry import Registry, suggest
from ecodiff_bench.core.values import Value

__all__ = [
    "METRICS",
    "MetricSpec",
    "RecordError",
    "Registry",
    "RunRecord",
    "StoreError",
    "SuiteError",
    "UnknownNameError",
    "Value",
    "metric",
    "normalize_record",
    "suggest",
]
