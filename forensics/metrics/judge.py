"""Glue between the scan and the report: build the timeline from the scanned metric tables,
judge it, and hand the report plain data (the anomalies, the rows around the failure, the
chart's points)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forensics.catalog import Catalog
from forensics.metrics.health import assess, run_mode
from forensics.metrics.table import TRAIN, MetricsTable
from forensics.metrics.timeline import Timeline, build_timeline, chart_series, window
from forensics.model import Anomaly, Evidence, Finding


@dataclass(frozen=True)
class Health:
    """What the metrics say about the run."""

    timeline: Timeline
    anomalies: tuple[Anomaly, ...]
    mode: str
    series: tuple = field(default=())
    max_steps: int | None = None

    @property
    def last_step(self) -> int | None:
        train = self.timeline.rows(TRAIN)
        return int(self.timeline.steps[train].max()) if len(train) else None

    def window(self, around: int | None) -> tuple:
        """The logged steps around a failure step (or the end)."""
        return window(self.timeline, around)

    def unreported(self, catalog: Catalog, found: set[str],
                   source_order: dict[str, int]) -> list[Finding]:
        """Findings for signatures that take their step from an anomaly (`nan-loss` from a
        NaN onset) when the metrics show the anomaly but no log line reported it, e.g. when
        only trainer_state.json holds the NaN. A finding is placed at its record's line (what
        a log printed after it came after it); one from a file read whole, after all lines."""
        out = []
        for signature in catalog.signatures:
            kind = signature.onset_anomaly
            anomaly = next((a for a in self.anomalies if kind and a.kind == kind), None)
            if anomaly is None or signature.id in found:
                continue
            timeline = self.timeline
            row = int(np.flatnonzero(timeline.steps == anomaly.step)[0])
            text = f"{anomaly.metric} = {anomaly.value} at step {anomaly.step} (metrics record)"
            evidence = Evidence(timeline.source_names[timeline.sources[row]],
                                int(timeline.lines[row]), text)
            out.append(Finding(signature=signature.id, title=signature.title,
                               category=signature.category, severity=signature.severity,
                               count=1, ranks=(), hosts=(), first=evidence,
                               evidence=(evidence,), captures=(("metric", anomaly.metric),),
                               order=_order(evidence, source_order)))
        return out


def _order(evidence: Evidence, source_order: dict[str, int]) -> int:
    if evidence.source not in source_order or not evidence.line:
        return 10**15
    return source_order[evidence.source] * 10**12 + evidence.line


def judge(tables: list[MetricsTable], stacks: tuple[str, ...] = ()) -> Health | None:
    """The run's timeline and its anomalies, advised in the keys of its stacks (numbers near
    the float limit overflow in sums and means quietly: the rules see inf, and stderr stays
    clean)."""
    with np.errstate(all="ignore"):
        return _judge(tables, stacks)


def _judge(tables: list[MetricsTable], stacks: tuple[str, ...]) -> Health | None:
    timeline = build_timeline(tables)
    if timeline is None:
        return None
    anomalies = tuple(assess(timeline, stacks))
    mode = run_mode(timeline)
    declared = [t.max_steps for t in tables if t.max_steps]
    return Health(timeline, anomalies, mode, chart_series(timeline, mode),
                  max(declared) if declared else None)
