"""The Markdown "Timeline" section: how far the run got, the logged steps around the
failure with anomalies marked, a Mermaid chart GitHub renders, and the anomaly list. Values
from the log (metric names, the checkpoint path, times) go in through `forensics.text`."""

from __future__ import annotations

import math

from forensics.model import Analysis, Anomaly
from forensics.text import md_code, md_fence, md_text, one_line
from forensics.timeparse import to_epoch, year_of


def render_timeline(analysis: Analysis) -> str:
    """The section, or "" when the logs hold no metrics, progress or checkpoint."""
    timeline = analysis.timeline
    if not timeline.steps_logged and timeline.last_step is None and not timeline.last_checkpoint:
        return ""
    facts = [f"{timeline.steps_logged} training steps logged"]
    if timeline.last_step is not None:
        progress = f"last step {timeline.last_step}"
        if timeline.max_steps:
            percent = 100 * timeline.last_step / timeline.max_steps
            progress += f" of {timeline.max_steps} ({percent:.0f}%)"
        facts.append(progress)
    parts = ["### Timeline", "; ".join(facts) + "."]
    checkpoint = timeline.last_checkpoint
    if checkpoint is not None:
        line = f"Last checkpoint saved: {md_code(checkpoint.path)} (step {checkpoint.step})"
        if checkpoint.time:
            line += f" at {md_text(checkpoint.time)}"
        gap = _gap(checkpoint.time, analysis)
        line += f", {gap} before the failure" if gap else ""
        if timeline.last_step is not None and timeline.last_step > checkpoint.step:
            line += (f"; resuming from it loses {timeline.last_step - checkpoint.step} "
                     "step(s) of work")
        parts.append(line + ".")
    if timeline.rows:
        parts.append(_table(analysis))
    elif timeline.last_metrics:
        parts.append("Last metrics: " + ", ".join(f"{md_text(k)} = {number(v)}"
                                                  for k, v in timeline.last_metrics) + ".")
    chart = _chart(analysis)
    if chart:
        parts.append(chart)
    if analysis.anomalies:
        parts.append(_anomalies(analysis.anomalies))
    return "\n\n".join(parts)


def number(value: float | None) -> str:
    """A metric value as the report prints it."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "**NaN**"
    if math.isinf(value):
        return "**inf**"
    return f"{value:.4g}"


def _table(analysis: Analysis) -> str:
    rows = analysis.timeline.rows
    columns = [name for name, _ in rows[-1][1]]
    marks: dict[int, list[str]] = {}
    for anomaly in analysis.anomalies:
        for step, _ in rows:
            if anomaly.step <= step <= max(anomaly.step, anomaly.end_step):
                marks.setdefault(step, []).append(
                    f"{anomaly.kind} {md_code(anomaly.metric, in_table=True)}")
    root = analysis.root_cause
    failure_step = root.finding.step if root is not None else None
    head = "| step | " + " | ".join(md_code(c, in_table=True) for c in columns) + " | |"
    lines = [head, "|---" * (len(columns) + 2) + "|"]
    for step, values in rows:
        by_name = dict(values)
        flags = list(dict.fromkeys(marks.get(step, [])))
        if failure_step == step:
            flags.insert(0, f"**{md_text(root.finding.signature)}**")
        mark = ("⚠ " + ", ".join(flags)) if flags else ""
        lines.append(f"| {step} | " + " | ".join(number(by_name.get(c)) for c in columns)
                     + f" | {mark} |")
    return "\n".join(lines)


def _chart(analysis: Analysis) -> str:
    blocks = []
    for metric, points in analysis.timeline.series:
        values = [v for _, v in points]
        low, high = min(values), max(values)
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        bottom = max(0.0, low - pad) if low >= 0 else low - pad
        xs = ", ".join(str(step) for step, _ in points)
        ys = ", ".join(f"{v:.6g}" for v in values)
        label = _label(metric)
        blocks.append(md_fence("xychart-beta\n"
                               f'    title "{label} by step"\n'
                               f"    x-axis [{xs}]\n"
                               f'    y-axis "{label}" {bottom:.6g} --> {high + pad:.6g}\n'
                               f"    line [{ys}]", "mermaid"))
    return "\n\n".join(blocks)


def _label(metric: str) -> str:
    """A metric name as a Mermaid string: one line, no double quote to end it early."""
    return one_line(metric).replace('"', "'")[:80]


def _anomalies(anomalies: tuple[Anomaly, ...]) -> str:
    lines = ["Unhealthy metrics:", ""]
    for a in anomalies:
        steps = f"step {a.step}" if a.end_step == a.step else f"steps {a.step}-{a.end_step}"
        lines.append(f"- **{a.kind}** of {md_code(a.metric)} at {steps}: {number(a.value)} "
                     f"(healthy: {a.healthy}). {a.advice}")
    return "\n".join(lines)


def _gap(time: str | None, analysis: Analysis) -> str:
    """How long before the root cause's line a timestamped event happened."""
    root = analysis.root_cause
    if root is None or root.finding.when is None:
        return ""
    then = to_epoch(time, year_of(time) or 1970)
    if then is None or then > root.finding.when:
        return ""
    minutes = round((root.finding.when - then) / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
