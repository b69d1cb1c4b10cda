"""Glue between the scan and the report: build the timeline from the scanned metric tables,
judge it, and hand the analysis plain data (no DataFrames leave this module)."""

from __future__ import annotations

from dataclasses import dataclass, field

from forensics.catalog import Signature
from forensics.health import assess, run_mode
from forensics.metrics import MetricsTable
from forensics.model import Anomaly, Evidence, Finding
from forensics.timeline import Timeline, build_timeline, chart_series, window


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
        train = self.timeline.train
        return int(train.index.max()) if len(train) else None

    def window(self, around: int | None) -> tuple:
        """The logged steps around a failure step (or the end)."""
        return window(self.timeline, around)

    @property
    def nan_finding(self):
        """A builder of a `nan-loss` finding for a NaN/Inf onset that no log line reported
        (e.g. only trainer_state.json holds it); None when there is no onset."""
        onset = next((a for a in self.anomalies if a.kind == "nan"), None)
        if onset is None:
            return None
        frame = self.timeline.frame
        row = frame[frame.index == onset.step].iloc[0]

        def build(signature: Signature) -> Finding:
            text = f"{onset.metric} = nan at step {onset.step} (logged metrics record)"
            evidence = Evidence(str(row["source"]), int(row["line"]), text)
            return Finding(signature=signature.id, title=signature.title,
                           category=signature.category, severity=signature.severity, count=1,
                           ranks=(), hosts=(), first=evidence, evidence=(evidence,),
                           captures=(("metric", onset.metric),), order=10**15)

        return build


def judge(tables: list[MetricsTable]) -> Health | None:
    """The run's timeline and its anomalies."""
    timeline = build_timeline(tables)
    if timeline is None:
        return None
    anomalies = tuple(assess(timeline))
    mode = run_mode(timeline)
    declared = [t.max_steps for t in tables if t.max_steps]
    return Health(timeline, anomalies, mode, chart_series(timeline, mode),
                  max(declared) if declared else None)
