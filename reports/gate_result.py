"""What the regression gate found: one :class:`Comparison` per (configuration, metric), and the
:class:`GateResult` that renders them as a text table, JUnit XML or JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ecodiff_bench.core.files import write_text_atomic
from ecodiff_bench.core.tables import text_table

Outcome = Literal["pass", "fail", "not_compared"]


def key_text(key: tuple[str, str, float]) -> str:
    model, method, ratio = key
    return f"{model}/base" if method == "base" else f"{model}/{method}@{ratio:g}"


@dataclass
class Comparison:
    model: str
    method: str
    ratio: float
    metric: str
    outcome: Outcome
    reason: str
    baseline: float | None = None
    candidate: float | None = None
    unit: str = ""
    change: float | None = None
    change_frac: float | None = None
    limits: str = ""
    compared: str = ""  # the metric whose values were compared, when not ``metric`` (a paired ratio)
    change_interval: tuple[float, float] | None = None  # of change_frac (relative bounds) or change
    kind: Literal["change", "window"] = "change"  # a bound on the change, or the absolute window

    @property
    def config(self) -> str:
        return key_text((self.model, self.method, self.ratio))

    @property
    def check_name(self) -> str:
        """The metric, and what was checked when it is not the change from the baseline."""
        name = f"{self.metric} (via {self.compared})" if self.compared else self.metric
        return f"{name} (window)" if self.kind == "window" else name

    def change_text(self) -> str:
        if self.change is None:
            return "n/a"
        text = f"{self.change:+.4g}"
        if self.change_frac is not None:
            text += f" ({100 * self.change_frac:+.1f}%)"
        if self.change_interval is not None:
            lo, hi = self.change_interval
            pct = self.change_frac is not None
            text += f" [{100 * lo:+.1f}%, {100 * hi:+.1f}%]" if pct else f" [{lo:+.4g}, {hi:+.4g}]"
        return text


@dataclass
class GateResult:
    comparisons: list[Comparison]
    warnings: list[str]
    strict: bool = False
    baseline_name: str = "baseline"
    candidate_name: str = "candidate"
    thresholds_source: str = ""
    thresholds: dict = field(default_factory=dict)

    @property
    def failures(self) -> list[Comparison]:
        return [row for row in self.comparisons if row.outcome == "fail"]

    @property
    def not_compared(self) -> list[Comparison]:
        return [row for row in self.comparisons if row.outcome == "not_compared"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        n = len(self.comparisons)
        verdict = "PASS" if self.passed else "FAIL"
        policy = (
            "strict: not-compared rows fail"
            if self.strict
            else "not-compared rows do not fail unless the metric is required"
        )
        return (
            f"{verdict}: {self.candidate_name} vs {self.baseline_name}: {n} check(s), "
            f"{n - len(self.failures) - len(self.not_compared)} passed, {len(self.failures)} failed, "
            f"{len(self.not_compared)} not compared ({policy})."
        )

    def table(self) -> str:
        """A text table of every comparison, then warnings and the summary line."""

        def number(value):
            return "n/a" if value is None else f"{value:.6g}"

        rows = []
        for row in self.comparisons:
            outcome = row.outcome.upper().replace("_", " ")
            rows.append(
                (
                    row.config,
                    row.check_name,
                    number(row.baseline),
                    number(row.candidate),
                    row.change_text(),
                    row.limits,
                    outcome,
                    row.reason,
                )
            )
        header = (
            "config",
            "metric",
            "baseline",
            "candidate",
            "change [interval]",
            "limit",
            "result",
            "reason",
        )
        lines = []
        if self.thresholds_source:
            lines += [f"Thresholds ({self.thresholds_source}): {self.thresholds}", ""]
        lines.append(text_table(header, rows))
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        lines += ["", self.summary()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The machine-readable result (``check --json``)."""
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "baseline": self.baseline_name,
            "candidate": self.candidate_name,
            "strict": self.strict,
            "thresholds_source": self.thresholds_source,
            "thresholds": self.thresholds,
            "counts": {
                "checks": len(self.comparisons),
                "failed": len(self.failures),
                "not_compared": len(self.not_compared),
            },
            "warnings": list(self.warnings),
            "comparisons": [{**asdict(row), "config": row.config} for row in self.comparisons],
        }

    def junit_xml(self) -> str:
        suite = ET.Element(
            "testsuite",
            {
                "name": f"ecodiff-bench gate: {self.candidate_name} vs {self.baseline_name}",
                "tests": str(len(self.comparisons)),
                "failures": str(len(self.failures)),
                "errors": "0",
                "skipped": str(len(self.not_compared)),
            },
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("baseline", self.baseline_name),
            ("candidate", self.candidate_name),
            ("strict", str(self.strict).lower()),
            ("thresholds", self.thresholds_source),
        ):
            ET.SubElement(props, "property", {"name": name, "value": value})
        for row in self.comparisons:
            name = f"{row.metric} (window)" if row.kind == "window" else row.metric
            case = ET.SubElement(suite, "testcase", {"classname": row.config, "name": name, "time": "0"})
            text = (
                f"baseline={row.baseline} candidate={row.candidate} unit={row.unit} change={row.change_text()} "
                f"limits={row.limits}: {row.reason}"
            )
            if row.outcome == "fail":
                ET.SubElement(case, "failure", {"message": row.reason, "type": "regression"}).text = text
            elif row.outcome == "not_compared":
                ET.SubElement(case, "skipped", {"message": f"not compared: {row.reason}"})
        if self.warnings:
            ET.SubElement(suite, "system-out").text = "\n".join(self.warnings)
        root = ET.Element(
            "testsuites",
            {"tests": suite.get("tests"), "failures": suite.get("failures"), "skipped": suite.get("skipped")},
        )
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def write_junit(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.junit_xml())
