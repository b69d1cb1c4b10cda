"""The job report's sections about the failure's context: how far the run got (timeline,
unhealthy metrics), the environment the log names, the Flight Recorder and memory snapshot
artifacts, problems reading the inputs, and the log's last lines. Data only (see
`report.blocks`); `report.sections.job_sections` puts them in order."""

from __future__ import annotations

import math

from forensics.model import Analysis, Anomaly, Evidence, FlightRecord, MemorySummary
from forensics.report.blocks import (
    Block,
    Bullets,
    Chart,
    Code,
    Line,
    Note,
    Section,
    Span,
    Table,
    code,
    inline,
    joined,
    para,
    plain,
    strong,
)
from forensics.timeparse import to_epoch, year_of

TAIL_IN_REPORT = 30


def timeline_section(analysis: Analysis) -> Section | None:
    """How far the run got, the last checkpoint, the logged steps around the end with the
    anomalies and the failure marked, a chart per metric, the unhealthy metrics; None when
    the logs hold no metrics, progress or checkpoint."""
    timeline = analysis.timeline
    if not timeline.steps_logged and timeline.last_step is None and not timeline.last_checkpoint:
        return None
    facts = [f"{timeline.steps_logged} training steps logged"]
    if timeline.last_step is not None:
        progress = f"last step {timeline.last_step}"
        if timeline.max_steps:
            percent = 100 * timeline.last_step / timeline.max_steps
            progress += f" of {timeline.max_steps} ({percent:.0f}%)"
        facts.append(progress)
    blocks: list[Block] = [para((plain("; ".join(facts) + "."),))]
    if timeline.last_checkpoint is not None:
        blocks.append(para(_checkpoint(analysis)))
    if timeline.rows:
        blocks.append(_steps_table(analysis))
    elif timeline.last_metrics:
        metrics = joined([(plain(k), plain(" = "), number(v)) for k, v in timeline.last_metrics])
        blocks.append(para((plain("Last metrics: "), *metrics, plain("."))))
    if timeline.series:
        blocks.append(Chart(timeline.series))
    if analysis.anomalies:
        blocks += [para((plain("Unhealthy metrics:"),)),
                   Bullets(tuple(_anomaly(a) for a in analysis.anomalies))]
    return Section("Timeline", (plain("Timeline"),), tuple(blocks))


def number(value: float | None) -> Span:
    """A metric value as the report prints it (a non-finite one emphasised)."""
    if value is None:
        return plain("-")
    if math.isnan(value):
        return strong("NaN")
    if math.isinf(value):
        return strong("inf")
    return plain(f"{value:.4g}")


def _checkpoint(analysis: Analysis) -> Line:
    timeline = analysis.timeline
    checkpoint = timeline.last_checkpoint
    assert checkpoint is not None
    spans = [plain("Last checkpoint saved: "), code(checkpoint.path),
             plain(f" (step {checkpoint.step})")]
    if checkpoint.time:
        spans += [plain(" at "), plain(checkpoint.time)]
    gap = _gap(checkpoint.time, analysis)
    if gap:
        spans.append(plain(f", {gap} before the failure"))
    if timeline.last_step is not None and timeline.last_step > checkpoint.step:
        spans.append(plain(f"; resuming from it loses {timeline.last_step - checkpoint.step} "
                           "step(s) of work"))
    return (*spans, plain("."))


def _steps_table(analysis: Analysis) -> Table:
    rows = analysis.timeline.rows
    columns = [name for name, _ in rows[-1][1]]
    marks: dict[int, list[tuple[str, str]]] = {}
    for anomaly in analysis.anomalies:
        for step, _ in rows:
            if anomaly.step <= step <= max(anomaly.step, anomaly.end_step):
                marks.setdefault(step, []).append((anomaly.kind, anomaly.metric))
    root = analysis.root_cause
    failure_step = root.finding.step if root is not None else None
    header = ((plain("step"),), *((code(c),) for c in columns), ())
    table_rows = []
    for step, values in rows:
        by_name = dict(values)
        flags: list[Line] = [(plain(f"{kind} "), code(metric))
                             for kind, metric in dict.fromkeys(marks.get(step, []))]
        if root is not None and failure_step == step:
            flags.insert(0, (strong(root.finding.signature),))
        mark = (plain("⚠ "), *joined(flags)) if flags else ()
        table_rows.append(((plain(step),), *((number(by_name.get(c)),) for c in columns),
                           mark))
    return Table(header, tuple(table_rows))


def _anomaly(anomaly: Anomaly) -> Line:
    steps = (f"step {anomaly.step}" if anomaly.end_step == anomaly.step
             else f"steps {anomaly.step}-{anomaly.end_step}")
    return (strong(anomaly.kind), plain(" of "), code(anomaly.metric), plain(f" at {steps}: "),
            number(anomaly.value), plain(" (healthy: "), *inline(anomaly.healthy),
            plain("). "), *inline(anomaly.advice))


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


def environment_section(analysis: Analysis) -> Section | None:
    """What the log says about the machine and the software, as it said it."""
    if not analysis.environment:
        return None
    rows = tuple(((plain(k),), (plain(v),)) for k, v in analysis.environment)
    return Section("Environment", (plain("Environment (from the log)"),),
                   (Table(((), ()), rows),))


def artifact_sections(analysis: Analysis) -> list[Section]:
    """The job's Flight Recorder dumps and CUDA memory snapshots."""
    sections = [flight_section(analysis.flight)] if analysis.flight is not None else []
    return sections + [memory_section(summary) for summary in analysis.memory]


def flight_section(record: FlightRecord) -> Section:
    """What a job's Flight Recorder dumps say: the first collective the ranks disagree on."""
    mismatch = record.mismatch
    blocks: list[Block] = [para((plain(f"{len(record.ranks)} rank dump(s): "
                                       + ", ".join(str(r) for r in record.ranks) + "."),))]
    if mismatch is None:
        blocks.append(para((plain("Every recorded collective matches across ranks."),)))
    else:
        blocks.append(para(
            (plain("First disagreement: "), strong(mismatch.disagreement),
             plain(f" at collective sequence number {mismatch.seq} of process group "),
             plain(mismatch.process_group), plain(" ("), code(mismatch.op), plain("): "),
             plain(mismatch.detail), plain(".")),
            (plain(f"Suspect rank(s): {', '.join(str(r) for r in mismatch.ranks)} "
                   f"(of {len(mismatch.expected_ranks)} expected)."),)))
    return Section("Artifacts", (plain("NCCL Flight Recorder"),), tuple(blocks))


def size(value: int | None) -> str:
    """Bytes as the CUDA allocator prints them."""
    if value is None:
        return "-"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.2f} {unit}"
    return f"{value} bytes"


def memory_section(report: MemorySummary) -> Section:
    """A CUDA memory snapshot: reserved against allocated, the failed request, the largest
    live allocations by where they were made."""
    title: Line = (plain("CUDA memory snapshot"),)
    if report.source:
        title += (plain(" "), code(report.source))
    blocks: list[Block] = [para((plain(
        f"Reserved by PyTorch: {size(report.reserved)} in {report.segments} segment(s); "
        f"allocated: {size(report.allocated)}; reserved but free: "
        f"{size(report.reserved - report.allocated)}; largest free block: "
        f"{size(report.largest_free_block)}."),))]
    if report.failed_request is not None:
        line = f"The failed allocation asked for {size(report.failed_request)}"
        if report.device_free is not None:
            line += f" with {size(report.device_free)} free on the device"
        blocks.append(para((plain(line + "."),)))
        if report.fragmented:
            blocks.append(para((strong("Fragmentation"), plain(
                ": enough memory was reserved but free, yet no free block was large enough. "
                "Set "), code("PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"), plain("."))))
    if report.holders:
        header = tuple((plain(h),) for h in ("bytes", "allocations", "where"))
        rows = tuple(((plain(size(h.bytes)),), (plain(h.count),), (code(h.where),))
                     for h in report.holders)
        blocks += [para((plain("Largest live allocations by where they were made:"),)),
                   Table(header, rows)]
    blocks += [Note(note) for note in report.notes]
    return Section("Artifacts", title, tuple(blocks))


def problems_section(analysis: Analysis) -> Section | None:
    """What went wrong reading the inputs, and what was noted about them."""
    problems = [p for s in analysis.sources for p in (*s.problems, *s.notes)]
    if not problems:
        return None
    return Section("Input problems", (plain("Input problems"),),
                   (Bullets(tuple((plain(p),) for p in problems)),))


def tail_section(tail: tuple[Evidence, ...]) -> Section | None:
    """The last lines of the log, numbered (folded away in Markdown)."""
    if not tail:
        return None
    shown = tail[-TAIL_IN_REPORT:]
    return Section("Last lines", (plain(f"Last {len(shown)} lines of "), code(shown[-1].source)),
                   (Code(tuple(e.text for e in shown), tuple(e.line for e in shown)),),
                   folded=True)

