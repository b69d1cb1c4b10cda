"""`forensics timeline`: the metrics of a run as CSV, Parquet or a Markdown table."""

from __future__ import annotations

from pathlib import Path

from forensics.catalog import load_catalog
from forensics.inputs.sources import Source
from forensics.lines.linepass import plan_scan, scan_source
from forensics.metrics.timeline import build_timeline


def _markdown(frame) -> str:
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False):
        cells = ["" if isinstance(v, float) and v != v else
                 (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def export_timeline(sources: list[Source], fmt: str, output: str | None) -> str | None:
    """The text to print (csv, md), or None after writing Parquet (or when no metrics)."""
    plan = plan_scan(load_catalog())
    tables = [scan_source(source, plan).metrics for source in sources]
    timeline = build_timeline(tables)
    if timeline is None:
        return None
    frame = timeline.frame.reset_index()
    frame["kind"] = frame["kind"].astype(str)
    if fmt == "parquet":
        frame.to_parquet(Path(output), index=False)  # type: ignore[arg-type]
        return ""
    text = _markdown(frame) if fmt == "md" else frame.to_csv(index=False)
    if output is not None:
        Path(output).write_text(text, encoding="utf-8")
    return text
