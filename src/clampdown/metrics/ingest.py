"""`clampdown_findings_ingested_total{shape}`: findings accepted, by delivery shape.

The shape label is bounded by the shapes the normalizers know (sources.SHAPES).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from clampdown.metrics.labels import Bounded
from clampdown.model import Finding
from clampdown.sources import SHAPES


class IngestInstruments:
    """Counts the findings of every accepted delivery (repeats of stored findings too)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._shape = Bounded(SHAPES)
        self.findings = Counter(
            "clampdown_findings_ingested",
            "Findings accepted by ingest and stored durably, by delivery shape "
            "(a repeat delivery of a stored finding counts again).",
            ["shape"],
            registry=registry,
        )
        # Every shape shows from the start (at 0), and costs one increment per finding.
        self._children = {shape: self.findings.labels(shape) for shape in SHAPES}

    def count(self, findings: Sequence[Finding]) -> None:
        """Count the findings of one accepted delivery (the services' `on_ingested` hook)."""
        for finding in findings:
            child = self._children.get(finding.shape)
            if child is None:
                child = self.findings.labels(self._shape(finding.shape))
            child.inc()
