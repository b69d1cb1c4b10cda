"""Traceback assembly, the torchrun failure block and metrics lines."""

from __future__ import annotations

from forensics.inputs.sources import Source
from forensics.lines.linepass import line_pass
from forensics.metrics import table as table_module
from forensics.metrics.table import EVAL, TAIL, TRAIN, MetricsTable


def scan(text: str, plan):
    return line_pass(Source("t.log", data=text.encode()), plan)


CHAINED = """\
Traceback (most recent call last):
  File "/venv/lib/python3.10/site-packages/torch/serialization.py", line 379, in save
    _save(obj, opened_zipfile, pickle_module, pickle_protocol)
OSError: [Errno 28] No space left on device

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app.py", line 33, in <module>
    fire.Fire(App)
RuntimeError: [enforce fail at inline_container.cc:337] . unexpected pos 192 vs 0
next unrelated line
"""


def test_chained_traceback_is_one_event_with_both_parts(plan):
    (tb,) = scan(CHAINED, plan).tracebacks
    assert [p.exception_type for p in tb.parts] == ["OSError", "RuntimeError"]
    assert tb.parts[0].message == "[Errno 28] No space left on device"
    assert (tb.start_line, tb.parts[-1].line) == (1, 11)
    assert tb.packages == ("torch",)


INTERLEAVED = """\
[rank1]: Traceback (most recent call last):
[rank0]: Traceback (most recent call last):
[rank1]:   File "train.py", line 5, in <module>
[rank0]:   File "train.py", line 5, in <module>
[rank1]:     step()
[rank0]:     step()
[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.
[rank0]: torch.distributed.DistBackendError: NCCL communicator was aborted on rank 0.
"""


def test_interleaved_ranks_are_separated(plan):
    result = scan(INTERLEAVED, plan)
    by_rank = {tb.who.rank: tb.final.exception_type for tb in result.tracebacks}
    assert by_rank == {1: "torch.OutOfMemoryError",
                       0: "torch.distributed.DistBackendError"}


def test_ignored_exception_traceback_is_dropped(plan):
    text = ("Exception ignored in atexit callback: <function _clean_up_worker at 0x7f>\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
            "    pass\nKeyboardInterrupt\n")
    (tb,) = scan(text, plan).tracebacks
    assert tb.ignored


BLOCK = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2024-08-25_17:31:29
  host      : node-a
  rank      : 1 (local_rank: 1)
  exitcode  : -15 (pid: 8159)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 8159
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2024-08-25_17:31:27
  host      : node-a
  rank      : 0 (local_rank: 0)
  exitcode  : -9 (pid: 8158)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 8158
============================================================
"""


def test_failure_block_entries(plan):
    failures = scan(BLOCK, plan).worker_failures
    summary = [(f.rank, f.exitcode, f.pid, f.host, f.root_cause_block) for f in failures]
    assert summary == [(1, -15, 8159, "node-a", False), (0, -9, 8158, "node-a", True)]


def test_launcher_lines_become_worker_failures(plan):
    text = ("E0801 16:07:21.020000 1648 torch/distributed/elastic/multiprocessing/api.py:874] "
            "failed (exitcode: -7) local_rank: 1 (pid: 1670) of binary: /usr/bin/python3\n"
            "[2023-11-28 10:00:34,590] [ERROR] [launch.py:321:sigkill_handler] ['python', '-u', "
            "'train.py', '--local_rank=3'] exits with return code = -9\n")
    failures = scan(text, plan).worker_failures
    assert [(f.exitcode, f.local_rank) for f in failures] == [(-7, 1), (-9, 3)]


def _printed(*bodies: str) -> MetricsTable:
    table = MetricsTable("x")
    table.add_printed(list(range(1, len(bodies) + 1)), [None] * len(bodies), list(bodies))
    return table


def test_metrics_in_every_printed_shape():
    table = _printed("{'loss': 0.0002, 'grad_norm': 0.0005825, 'learning_rate': 3.785e-06, "
                     "'rewards/reward_fn/mean': 0.4647, 'epoch': 0.85}",
                     "{'loss': '2.345', 'grad_norm': '1.235e+04', 'epoch': '0.04'}",
                     "{'loss': nan, 'kl': None, 'x': np.float64(1.5), 'n': inf, 'epoch': 1}")
    assert table.row(0).values == {
        "loss": 0.0002, "grad_norm": 0.0005825, "learning_rate": 3.785e-06,
        "rewards/reward_fn/mean": 0.4647, "epoch": 0.85}
    assert table.row(1).values == {"loss": 2.345, "grad_norm": 12350.0, "epoch": 0.04}
    odd = table.row(2).values
    assert odd["kl"] is None and odd["x"] == 1.5 and odd["n"] == float("inf")
    assert odd["loss"] != odd["loss"]  # nan


def test_printed_records_keep_their_kind_and_order():
    """Records parsed together: an evaluation stays an evaluation, the summary is kept
    aside, a dict without one number is no record, and the last training line is told."""
    table = MetricsTable("x")
    last = table.add_printed(
        [3, 5, 8, 9, 12], [10, 10, None, 20, 20],
        ["{'loss': 1.5, 'epoch': 0.1}", "{'eval_loss': 1.7, 'epoch': 0.1}",
         "{'note': 'warmup'}", "{'loss': 1.2, 'epoch': 0.2}",
         "{'train_runtime': 99.0, 'train_loss': 1.3, 'epoch': 0.2}"])
    assert list(table.lines) == [3, 5, 9] and list(table.steps) == [10.0, 10.0, 20.0]
    assert [table.row(i).kind for i in range(3)] == [TRAIN, EVAL, TRAIN]
    assert table.summary == {"train_runtime": 99.0, "train_loss": 1.3, "epoch": 0.2}
    assert last == 9


def test_completion_and_progress_are_tracked(plan):
    text = (" 50%|█████     | 5/10 [00:01<00:01,  4.1it/s]\n"
            "{'train_runtime': 12.5, 'train_samples_per_second': 8.0, 'train_loss': 1.1, "
            "'epoch': 1.0}\n")
    result = scan(text, plan)
    assert result.metrics.summary is not None
    assert result.progress == {10: (5, 1)}


def test_a_long_run_is_thinned_but_keeps_its_nan_and_its_count(monkeypatch):
    """Past MAX_ROWS records a source keeps every k-th training record, every evaluation
    and every record holding a NaN: memory stays bounded, the NaN onset is not lost."""
    monkeypatch.setattr(table_module, "MAX_ROWS", 1000)
    metrics = MetricsTable("x")
    for i in range(5000):
        metrics.add(i + 1, i, {"loss": float("nan") if i == 3333 else 1.0 / (i + 1)})
        if i % 700 == 0:
            metrics.add(i + 1, i, {"eval_loss": 0.5})
    assert len(metrics) <= 1000 and metrics.stride > 1
    assert metrics.count(TRAIN) == 5000 and metrics.count(EVAL) == 8
    kept = [metrics.row(i) for i in range(len(metrics))]
    assert any(row.step == 3333 and row.values["loss"] != row.values["loss"] for row in kept)
    assert [row.step for row in kept] == sorted(row.step for row in kept)


def test_a_thinned_table_keeps_the_last_records_of_its_source(monkeypatch):
    """However thinned, a source's last TAIL training records are in its table once it is
    settled (the report's steps before the failure), each among the rows by its line."""
    monkeypatch.setattr(table_module, "MAX_ROWS", 1000)
    metrics = MetricsTable("x")
    for i in range(5003):
        metrics.add(2 * i, i, {"loss": 1.0 / (i + 1)})
        if i == 4995:
            metrics.add(2 * i + 1, i, {"eval_loss": 0.5})
    assert metrics.stride > 1 and len(metrics) <= 1000
    metrics.settle()
    rows = [metrics.row(i) for i in range(len(metrics))]
    assert [r.line for r in rows] == sorted(r.line for r in rows)
    assert [r.step for r in rows if r.kind == TRAIN][-TAIL:] == list(range(5003 - TAIL, 5003))
    assert rows[-1].values == {"loss": 1.0 / 5003}
    assert metrics.count(TRAIN) == 5003 and metrics.count(EVAL) == 1


def test_a_table_that_never_fills_is_never_thinned_ahead(monkeypatch):
    """Records logged only at a log's start, fewer than MAX_ROWS in all: thinning ahead
    waits for the table to have been full before an eighth of the log is read."""
    monkeypatch.setattr(table_module, "MAX_ROWS", 1000)
    metrics = MetricsTable("x")
    for i in range(300):
        metrics.add(i + 1, i, {"loss": 1.0})
        metrics.anticipate(0.12 * (i + 1) / 300)
    for share in (0.2, 0.5, 1.0):
        metrics.anticipate(share)
    assert metrics.stride == 1 and len(metrics) == 300


def _thinned_run(share_read=None) -> MetricsTable:
    """20,000 training records with a NaN at step 12345; `share_read(i)`: the share of the
    source read after record i, told to the table every 500 records (None: never told)."""
    metrics = MetricsTable("x")
    for i in range(20_000):
        metrics.add(i + 1, i, {"loss": float("nan") if i == 12_345 else 1.0 / (i + 1)})
        if share_read is not None and i % 500 == 499:
            metrics.anticipate(share_read(i))
    return metrics


def test_a_table_that_knows_its_source_size_thins_ahead_to_the_same_stride(monkeypatch):
    """Told how much of its source was read, a table raises its stride before it is full
    and ends at the stride that thinning when full reaches, with the same counts, its NaN
    and no more rows; an estimate more than twice the truth thins further, as documented."""
    monkeypatch.setattr(table_module, "MAX_ROWS", 1000)
    plain = _thinned_run()
    told = _thinned_run(lambda i: (i + 1) / 20_000)
    early = MetricsTable("x")
    early.add(1, 0, {"loss": 1.0})
    early.anticipate(1e-6)  # one record is no density to judge by
    assert early.stride == 1 and plain.stride == 32
    assert told.stride == plain.stride and len(told) <= 1000
    assert told.count(TRAIN) == plain.count(TRAIN) == 20_000
    for metrics in (plain, told):
        assert [r.step for r in map(metrics.row, range(len(metrics)))
                if r.values["loss"] != r.values["loss"]] == [12_345]
    assert _thinned_run(lambda i: (i + 1) / 80_000).stride == 64
    front_loaded = MetricsTable("x")  # 500 records in the first 1% of a log
    for i in range(500):
        front_loaded.add(i + 1, i, {"loss": 1.0})
    front_loaded.anticipate(0.01)
    assert front_loaded.stride == 1


def test_printed_records_are_thinned_as_records_added_one_by_one(monkeypatch):
    """The fast path of thinning (plainly finite numbers counted without converting them)
    keeps exactly the rows the general path keeps: NaN, inf, None and an exponent that
    overflows are each kept, every k-th plain one too."""
    monkeypatch.setattr(table_module, "MAX_ROWS", 300)
    odd = {777: "nan", 901: "inf", 1203: "None", 1500: "1e400", 1777: "-3.5e-07"}
    bodies = [f"{{'loss': {odd.get(i, f'{1.0 / (i + 1):.6f}')}, 'grad_norm': 0.5, "
              f"'epoch': {i / 100:.2f}}}" for i in range(2000)]
    printed = MetricsTable("x")
    printed.add_printed(list(range(1, 2001)), list(range(2000)), bodies)
    one_by_one = MetricsTable("x")
    for i in range(len(bodies)):
        value = odd.get(i, f"{1.0 / (i + 1):.6f}")
        loss = None if value == "None" else float(value)
        one_by_one.add(i + 1, i, {"loss": loss, "grad_norm": 0.5, "epoch": i / 100})
    assert printed.stride > 1 and printed.count(TRAIN) == one_by_one.count(TRAIN) == 2000
    def rows(table):  # NaN compares unequal to itself: compare reprs
        return [repr(table.row(i)) for i in range(len(table))]

    assert rows(printed) == rows(one_by_one)
    assert {777, 901, 1203, 1500} <= {int(printed.row(i).step) for i in range(len(printed))}
