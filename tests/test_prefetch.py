"""Blocks prepared ahead on other threads, across the boundaries between files, give each
file the line pass it gets when read alone."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from forensics.inputs import sources
from forensics.inputs.sources import Source
from forensics.lines import linepass, prefetch, records
from forensics.metrics import progress
from tests.test_bulk_records import InlineExecutor

OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
       "total capacity of 79.15 GiB of which 1.02 GiB is free.")


def _log(seed: int, steps: int) -> bytes:
    """Bars, metrics records and a few error lines, as one rank of a run prints them."""
    rng = random.Random(seed)
    total = 1000 + seed
    lines = []
    for step in range(1, steps + 1):
        lines.append(f"\r{100 * step // total:>3}%|#####     | {step}/{total} [00:01<00:09]")
        lines.append(f"{{'loss': {rng.uniform(0, 3):.4f}, 'grad_norm': "
                     f"{rng.uniform(0, 1):.4f}, 'epoch': {step / total:.4f}}}")
        if rng.random() < 0.002:
            lines.append("NCCL WARN Call to ibv_create_cq failed")
    lines.append(OOM)
    return ("\n".join(lines) + "\n").encode()


def _summary(result: linepass.LinePass) -> tuple:
    m = result.metrics
    return (result.info, [(t.line, t.text, [s.signature for s in t.matches])
                          for t in result.tokens],
            np.frombuffer(m.steps).tolist(), list(m.lines), list(m.cell_keys),
            np.frombuffer(m.cell_values).tolist(), m.offered, m.keys, result.progress,
            result.trained_on, result.last_step_line, [e.text for e in result.tail])


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(sources.read_blocks, "__defaults__", (32 * 1024,))
    monkeypatch.setattr(linepass, "BULK_MIN", 16)
    monkeypatch.setattr(records, "BULK_MIN", 16)


@pytest.mark.parametrize("many_hits", [prefetch.MANY_HITS, 0])
def test_logs_read_together_each_get_the_pass_they_get_alone(plan, small_blocks, monkeypatch,
                                                             tmp_path, many_hits):
    monkeypatch.setattr(prefetch, "MANY_HITS", many_hits)  # 0: one block ahead at a time
    state = tmp_path / "trainer_state.json"
    state.write_text('{"log_history": [{"loss": 1.0, "step": 5}]}')
    logs = [Source("rank0.log", data=_log(0, 3000)), Source("empty.log", data=b""),
            Source("trainer_state.json", state, content="trainer-state"),
            Source("rank1.log", data=_log(1, 40)), Source("rank2.log", data=_log(2, 2500))]
    together = linepass.line_passes(logs, plan)
    assert len(together) == len(logs)
    for source, result in zip(logs, together, strict=True):
        assert _summary(result) == _summary(linepass.line_pass(source, plan)), source.name
    assert together[0].info.lines == _log(0, 3000).count(b"\n")
    assert len(together[2].metrics) == 1


@pytest.mark.parametrize("known", [True, False])
def test_a_job_of_several_blocks_prepares_its_first_on_a_thread(plan, small_blocks, monkeypatch,
                                                                 known):
    """Where the sizes say there is more than a block, the first block is prepared on a
    pool thread beside the second (else on the calling thread, before the pool starts)."""
    monkeypatch.setattr(prefetch, "BLOCK_SIZE", 32 * 1024 if known else 1 << 40)
    threads: dict[int, str] = {}
    real = prefetch._Cursor.prepare

    def prepare(cursor):
        prepared = real(cursor)
        threads[prepared[0]] = threading.current_thread().name
        return prepared

    monkeypatch.setattr(prefetch._Cursor, "prepare", prepare)
    log = Source("rank0.log", data=_log(0, 3000))
    alone = _summary(linepass.line_pass(log, plan))
    assert threads[0].startswith("forensics-read") == known
    assert threads[1].startswith("forensics-read")
    assert _summary(linepass.line_pass(Source("rank0.log", data=_log(0, 3000)), plan)) == alone
    monkeypatch.setattr(prefetch, "BLOCK_SIZE", 1 << 40)
    assert _summary(linepass.line_pass(Source("rank0.log", data=_log(0, 3000)), plan)) == alone


def test_blocks_are_prepared_across_the_boundary_between_files(plan, small_blocks,
                                                                 monkeypatch):
    order: list[tuple[str, int]] = []
    real = prefetch._Cursor.prepare

    def prepare(cursor):
        prepared = real(cursor)
        if prepared[1] is not None:
            order.append(("prepared", prepared[1][0]))
        return prepared

    monkeypatch.setattr(prefetch._Cursor, "prepare", prepare)
    monkeypatch.setattr(prefetch, "ThreadPoolExecutor", InlineExecutor(eager=True))
    walks = [Source(f"rank{i}.log", data=_log(i, 800)) for i in range(2)]
    reading = [prefetch.Reading(s, sources.ReadStatus(), lambda: plan.engine,
                                linepass.MetricsTable(s.name), progress.ProgressTracker())
               for s in walks]
    seen = []
    for index, _ in prefetch.prepared_blocks(reading):
        seen.append(index)
        order.append(("walked", index))
    last_of_first = max(i for i, (what, index) in enumerate(order)
                        if what == "walked" and index == 0)
    first_of_second = order.index(("prepared", 1))
    assert first_of_second < last_of_first  # the next file was read before the last ended
    assert seen == sorted(seen) and set(seen) == {0, 1}


class _FirstWaits(ThreadPoolExecutor):
    """A pool whose first task starts reading only once its second one has finished, so
    the block read second is handed back first."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.submitted = 0
        self.second_done = threading.Event()

    def submit(self, task):
        self.submitted += 1
        if self.submitted == 1:
            return super().submit(self._after_second, task)
        if self.submitted == 2:
            return super().submit(self._second, task)
        return super().submit(task)

    def _after_second(self, task):
        assert self.second_done.wait(timeout=30)
        return task()

    def _second(self, task):
        try:
            return task()
        finally:
            self.second_done.set()


def test_blocks_prepared_out_of_order_are_walked_in_order(plan, small_blocks, monkeypatch):
    log = Source("rank0.log", data=_log(0, 3000))
    alone = _summary(linepass.line_pass(log, plan))
    with monkeypatch.context() as patch:
        patch.setattr(prefetch, "ThreadPoolExecutor", _FirstWaits)
        reading = prefetch.Reading(log, sources.ReadStatus(), lambda: plan.engine,
                                   linepass.MetricsTable(log.name),
                                   progress.ProgressTracker())
        blocks = [p.raw for _, p in prefetch.prepared_blocks([reading])]
        out_of_order = _summary(linepass.line_pass(log, plan))
    assert len(blocks) > 4
    assert b"".join(blocks) == log.data
    assert out_of_order == alone


def test_redraws_counted_ahead_leave_totals_met_since_to_the_walk():
    block = b"".join(b"\r %d%%|##   | %d/10 [00:01]\n" % (n * 10, n) for n in range(1, 11))
    block += b"".join(b"\r %d%%|##   | %d/20 [00:01]\n" % (n * 5, n) for n in range(1, 21))
    ahead, alone = progress.ProgressTracker(), progress.ProgressTracker()
    for tracker in (ahead, alone):  # both have met the bar of 10, not the one of 20
        tracker.finish_block(b"\r 10%|#    | 1/10 [00:01]\n", 1, 1)
    ahead.begin_block(*progress.block_redraws(block, ahead.known_totals()))
    assert progress.block_redraws(block, (10,)) == (30, {10: 10})
    ahead.finish_block(block, 2, 30)
    alone.finish_block(block, 2, 30)
    assert ahead.bars == alone.bars == {10: (10, 11), 20: (20, 20)}
