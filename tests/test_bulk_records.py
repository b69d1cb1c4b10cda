"""Printed metrics dicts read in bulk (`lines.records`) give exactly the table that reading
them one at a time gives, on logs full of what breaks the bulk path's assumptions."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forensics.inputs import bytesearch, sources
from forensics.inputs.sources import Source
from forensics.lines import linepass, records
from forensics.metrics import printed, progress, spans, table

TOTAL = 9000


def _bar(step: int, total: int = TOTAL, description: str = "") -> str:
    done = 10 * step // total
    return (f"{description}{100 * step // total:>3}%|{'█' * done}{' ' * (10 - done)}| "
            f"{step}/{total} [00:12<41:12,  2.31it/s]")


def _value(rng: random.Random) -> str:
    return rng.choice([f"{rng.uniform(0, 3):.4f}", f"{rng.uniform(0, 1e-4):.3e}", "2e-05",
                       str(rng.randrange(100)), f"'{rng.uniform(0, 3):.3f}'"])


def _record(rng: random.Random, step: int, keys: tuple[str, ...]) -> str:
    items = [f"'{key}': {_value(rng)}" for key in keys]
    return "{" + ", ".join(items) + f", 'epoch': {step / TOTAL:.4f}" + "}"


ODD_LINES = [
    "{'loss': nan, 'grad_norm': nan, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "{'loss': 1.5, 'grad_norm': inf, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "{'loss': 1.5, 'grad_norm': None, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "{'loss': np.float64(1.5), 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "{'loss': 1_000, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "{'loss': 1e400, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "{'eval_loss': 1.2, 'eval_runtime': 3.1, 'epoch': 0.5}",
    "{'loss': 1.1, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.5} 'eval_x'",
    "{'loss': 1.1, 'step': 77, 'epoch': 0.5}",
    "{'input_ids': [1, 2, 3]}",
    "{'loss': 1.1, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 'x'}",
    "{'epoch': 0.5,\n 'loss': 1.25,\n 'grad_norm': 0.5}",
    "{'loss': 1.1, 'mean_token_accuracy': 0.7, 'grad_norm': 0.3, 'learning_rate': 2e-05, "
    "'epoch': 0.5}",
    "{'train_runtime': 12.0, 'train_loss': 1.0, 'epoch': 1.0}",
    "[rank0]: {'loss': 1.3, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.5}",
    "Map:  50%|█████     | 500/1000 [00:01<00:01, 500.0 examples/s]",
    "\r" + _bar(5, 40, "Evaluating: ") + "\r{'loss': 1.0, 'grad_norm': 0.3, "
    "'learning_rate': 2e-05, 'epoch': 0.5}",
    "  50%|█████     | 20/40 [00:01<00:01]{'loss': 1.0, 'grad_norm': 0.3, "
    "'learning_rate': 2e-05, 'epoch': 0.5}",
    "\xff\xfe{'loss': 1.0, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.5}",
]
KEYS = ("loss", "grad_norm", "learning_rate")


def _log(seed: int, records_count: int, odd_rate: float) -> bytes:
    """Records behind bar redraws, as HF Trainer prints them, with odd lines among them."""
    rng = random.Random(seed)
    lines = ["{'loss': 2.0, 'grad_norm': 1.0, 'learning_rate': 2e-05, 'epoch': 0.0}"]
    for step in range(1, records_count + 1):
        if rng.random() < odd_rate:
            lines.append(rng.choice(ODD_LINES))
        bar = _bar(step)
        if rng.random() < 0.2:
            lines.append(bar)
            bar = _bar(step)
        keys = KEYS if step < records_count // 2 else ("loss", "grad_norm", "lr")
        lines.append(f"\r{bar}\r{' ' * 20}\r{_record(rng, step, keys)}")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _read(data: bytes, bulk: bool, plan, monkeypatch: pytest.MonkeyPatch) -> tuple:
    with monkeypatch.context() as patch:
        if not bulk:
            patch.setattr(linepass._LineReader, "_read_in_bulk",
                          lambda self, block, start, end: start)
        result = linepass.line_pass(Source("run.log", data=data), plan)
    m = result.metrics
    return (np.frombuffer(m.steps).tolist(), list(m.lines), list(m.kinds), list(m.cell_rows),
            list(m.cell_keys), np.frombuffer(m.cell_values).tolist(), bytes(m.cell_states),
            m.offered, m.stride, m.keys, result.progress, result.trained_on,
            result.last_step_line)


def _same_tables(data: bytes, plan, monkeypatch: pytest.MonkeyPatch) -> int:
    """Assert both ways give one table; returns how many records were read in bulk."""
    calls: list[int] = []
    real = linepass.read_run
    with monkeypatch.context() as patch:
        patch.setattr(linepass, "read_run",
                      lambda *a: calls.append(a[3] - a[2]) or real(*a))
        bulk = _read(data, True, plan, monkeypatch)
    slow = _read(data, False, plan, monkeypatch)
    names = ("steps", "lines", "kinds", "cell_rows", "cell_keys", "cell_values",
             "cell_states", "offered", "stride", "keys", "progress", "trained_on",
             "last_step_line")
    for name, got, want in zip(names, bulk, slow, strict=True):
        if name in ("steps", "cell_values"):
            assert np.array_equal(np.array(got), np.array(want), equal_nan=True), name
        else:
            assert got == want, name
    return sum(calls)


@pytest.mark.parametrize("seed", range(4))
def test_bulk_reading_gives_the_table_of_reading_one_at_a_time(seed, plan, monkeypatch):
    monkeypatch.setattr(table, "MAX_ROWS", 700)  # thinning several times over
    monkeypatch.setattr(records, "BULK_MIN", 16)
    monkeypatch.setattr(linepass, "BULK_MIN", 16)
    monkeypatch.setattr(sources.read_blocks, "__defaults__", (64 * 1024,))  # many blocks
    assert _same_tables(_log(seed, 6000, odd_rate=0.01), plan, monkeypatch) > 2000


def test_a_source_of_known_size_reads_fewer_records_for_the_same_thinning(plan, monkeypatch):
    """A log whose size is known is thinned ahead (`MetricsTable.anticipate`): fewer records
    are read in bulk, and the table ends as one of unknown size (stdin) does: the same
    count, stride, evaluations and NaN/inf records (which other training records are kept
    may differ: every k-th, counted from another row)."""
    monkeypatch.setattr(table, "MAX_ROWS", 700)
    monkeypatch.setattr(records, "BULK_MIN", 16)
    monkeypatch.setattr(linepass, "BULK_MIN", 16)
    monkeypatch.setattr(sources.read_blocks, "__defaults__", (64 * 1024,))
    data = _log(3, 20_000, odd_rate=0.01)
    appended: list[int] = []
    real = table.MetricsTable.append_training
    monkeypatch.setattr(table.MetricsTable, "append_training",
                        lambda self, lines, *a: appended.append(len(lines)) or
                        real(self, lines, *a))

    def read(size_known: bool):
        appended.clear()
        with monkeypatch.context() as patch:
            if not size_known:
                patch.setattr(linepass, "stored_size", lambda source: None)
            metrics = linepass.line_pass(Source("run.log", data=data), plan).metrics
        rows = [metrics.row(i) for i in range(len(metrics))]
        odd = [(r.step, r.kind, repr(r.values)) for r in rows if r.kind != table.TRAIN
               or not all(v is None or np.isfinite(v) for v in r.values.values())]
        return (metrics.offered, metrics.stride, odd), sum(appended)

    (known, read_known), (unknown, read_unknown) = read(True), read(False)
    assert known == unknown and known[1] >= 16 and known[2]
    assert read_known < read_unknown * 0.8


def test_the_last_records_of_a_thinned_log_are_read_in_bulk_too(plan, monkeypatch):
    """The records read in bulk that the thinning leaves out are held in case they are the
    log's last (`table.TAIL`): the report shows the steps before the end, not the last
    k-th."""
    monkeypatch.setattr(table, "MAX_ROWS", 700)
    monkeypatch.setattr(records, "BULK_MIN", 16)
    monkeypatch.setattr(linepass, "BULK_MIN", 16)
    monkeypatch.setattr(sources.read_blocks, "__defaults__", (64 * 1024,))
    metrics = linepass.line_pass(Source("run.log", data=_log(5, 6000, 0)), plan).metrics
    steps = np.frombuffer(metrics.steps)
    assert metrics.stride > 1
    assert steps[-table.TAIL:].tolist() == list(range(6001 - table.TAIL, 6001))


def test_a_log_of_one_block_is_read_in_bulk_from_its_first_records(plan, monkeypatch):
    assert _same_tables(_log(7, 3000, odd_rate=0), plan, monkeypatch) > 2990


def test_a_block_of_two_bars_is_read_one_at_a_time(plan, monkeypatch):
    rng = random.Random(2)
    lines = []
    for step in range(1, 3000):
        lines.append(f"\r{_bar(step)}\r{_record(rng, step, KEYS)}")
        if step % 500 == 0:  # an evaluation bar of another total, then its record
            lines += [_bar(k, 40) for k in range(1, 41)]
            lines.append(f"{{'eval_loss': 1.0, 'epoch': {step / TOTAL}}}")
    _same_tables(("\n".join(lines) + "\n").encode(), plan, monkeypatch)


def test_bulk_pattern_matches_what_python_float_reads_finite():
    pattern = re.compile(printed.bulk_pattern(("loss", "a b", "x.y")))
    assert pattern.match("{'loss': 1.5, 'a b': '2e-05', 'x.y': .5}")
    for value in ("nan", "inf", "-inf", "None", "1_0", "1e400", "np.float64(1.0)", "0x10"):
        assert not pattern.match(f"{{'loss': {value}, 'a b': 1, 'x.y': 2}}"), value
    for text in re.findall(printed.NUMBER, "1 -2.5 .5 3. 1e5 1E-07 12345.6789"):
        assert np.isfinite(float(text))


def test_spans_read_numbers_and_matches_in_one_call():
    block = b"xx{'a': 1.5}\xff\n{'a': 'nan'}\n{'a': -2e-05}\n"
    starts = np.array([m.start() for m in re.finditer(rb"\{'", block)])
    pattern = "^\\{'a': '?(?P<g0>" + printed.NUMBER + ")'?\\}"
    values, matched = spans.numbers(block, starts, pattern, 1)
    assert matched.tolist() == [True, False, True]
    assert values[matched, 0].tolist() == [1.5, -2e-05]
    assert spans.matching(block, starts, pattern).tolist() == [True, False, True]
    assert spans.matching(block, starts[:0], pattern).tolist() == []


@pytest.mark.parametrize(("text", "plain"), [
    ("\r 40%|████      | 4/10 [00:01]", True),
    ("40%|████      | 4/10 [00:01]", True),
    ("\n \t 40%|████      | 4/10 [00:01]", True),
    ("\rMap:  40%|████      | 4/10 [00:01]", False),
    ("\r 40%|████      | 4/11 [00:01]", False),  # another total
    ("\r 40% done | 4/10 [", False),
    ("\r" + " " * 100 + "40%|████      | 4/10 [00:01]", False),  # read the slow way
    ("|12 40%|████      | 4/10 [00:01]", False),
])
def test_a_plain_bar_is_only_an_undescribed_redraw_of_its_total(text, plain):
    block = text.encode()
    at = np.array([block.index(b"%")])
    steps, ok = progress.ProgressTracker._plain_bars(block, at, 10)
    assert ok.tolist() == [plain]
    if plain:
        assert steps.tolist() == [4.0]


@pytest.mark.parametrize("seed", range(20))
def test_training_slots_keep_what_one_at_a_time_keeps(seed, monkeypatch):
    monkeypatch.setattr(table, "MAX_ROWS", 40)
    rng = random.Random(seed)
    one, bulk = table.MetricsTable("a"), table.MetricsTable("b")
    bulk.bulk_shapes.append(table.BulkShape(("loss",), np.zeros(1, dtype=np.uint16)))
    record = 0
    while record < 600:
        count = rng.randrange(1, 90)
        for line in range(record, record + count):
            one.add(line, line, {"loss": line / 8})
        start = record
        while start < record + count:
            kept, used = bulk.training_slots(record + count - start)
            chosen = start + kept
            texts = [b"{'loss': %r}" % (line / 8) for line in chosen.tolist()]
            bulk.append_training(chosen, chosen.astype(float), texts, 0)
            start += used
        record += count
    assert list(bulk.lines) == list(one.lines)
    assert (bulk.offered, bulk.stride) == (one.offered, one.stride)
    assert set(bulk.cell_states) == {table.PENDING}  # read only once settled
    bulk.settle()
    assert list(bulk.cell_values) == list(one.cell_values)
    assert bytes(bulk.cell_states) == bytes(one.cell_states)


@pytest.mark.parametrize("rfind_bytes", [0, 1 << 40])  # always numpy; always rfind
def test_the_percent_before_each_record_is_rfinds(monkeypatch, rfind_bytes):
    monkeypatch.setattr(progress, "_RFIND_BYTES", rfind_bytes)
    rng = random.Random(5)
    for _ in range(2000):
        block = bytes(rng.choice(b"ab%\n") for _ in range(rng.randrange(0, 120)))
        at = np.array(sorted(rng.sample(range(len(block) + 1),
                                        k=rng.randrange(0, min(len(block) + 1, 12)))))
        assert progress.percent_before(block, at).tolist() == \
            [block.rfind(b"%", 0, int(a)) for a in at]


def test_byte_searches_find_what_re_finds(monkeypatch):
    monkeypatch.setattr(bytesearch, "_PIECE", 7)  # pieces of a block join exactly
    rng = random.Random(3)
    for _ in range(4000):
        block = bytes(rng.choice(b"ab/[ %{'\n") for _ in range(rng.randrange(0, 60)))
        needle = bytes(rng.choice(b"ab/[ %") for _ in range(rng.randrange(1, 4)))
        if rng.random() < 0.5:  # long needles that overlap themselves
            alphabet = rng.choice([b"ab", b"a"])
            block = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
            needle = bytes(rng.choice(alphabet) for _ in range(rng.randrange(7, 20)))
        starts = [m.start() for m in re.finditer(b"(?=" + re.escape(needle) + b")", block)]
        assert bytesearch.count_occurrences(block, needle) == len(starts)
        assert bytesearch.count_byte(block, ord("a")) == block.count(b"a")
        assert bytesearch.positions(block, ord("/")).tolist() == \
            [i for i, c in enumerate(block) if c == ord("/")]
    assert bytesearch.count_occurrences(b"abc", b"") == 0


class InlineExecutor:
    """A stand-in for the prefetch thread: work submitted runs at once (`eager`, so each
    block is prepared before the one before it is walked: with the engine as it was), or
    only when its result is asked for (with the engine as the walk left it)."""

    def __init__(self, eager: bool) -> None:
        self.eager = eager

    def __call__(self, *args, **kwargs) -> InlineExecutor:
        return self

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, work):
        done = work() if self.eager else None

        class Ahead:
            def result(self):
                return done if self.eager else work()

        Ahead.eager = self.eager
        return Ahead()


def test_keywords_muted_while_a_block_was_prepared_are_dropped(plan, monkeypatch):
    """A warning printed on every step leaves the engine once its signature kept its lines;
    a block prepared before that still holds its hits, which the walk drops."""
    from forensics.lines import prefetch

    warning = ("/opt/conda/lib/python3.11/site-packages/torch/utils/checkpoint.py:87: "
               "UserWarning: None of the inputs have requires_grad=True. Gradients will be None")
    data = "".join(f"step {i}\n{warning}\n" for i in range(3000)).encode()
    monkeypatch.setattr(sources.read_blocks, "__defaults__", (16 * 1024,))
    results = []
    for eager in (True, False):
        monkeypatch.setattr(prefetch, "ThreadPoolExecutor", InlineExecutor(eager))
        lines = linepass.line_pass(Source("run.log", data=data), plan)
        results.append(([(t.line, t.matches) for t in lines.tokens], lines.info.notes))
    assert results[0] == results[1]
    assert any("further matching lines" in note for note in results[0][1])


def test_analyzing_metrics_read_in_bulk_leaves_pandas_unimported(tmp_path):
    """`analyze` never imports pandas (0.2-0.3 s of every run with metrics; and with it
    loaded, RE2, Arrow's regex kernels, matches the regular-dict pattern half as fast: its
    DFA's states land in a heap that pandas' import left fragmented). Only `forensics
    timeline` and `scan` write frames."""
    log = tmp_path / "run.log"
    log.write_bytes(_log(5, 20_000, 0))  # more records than spans.numbers reads in one slice
    script = ("import sys\n"
              "from forensics import analyze\n"
              "from forensics.report import render\n"
              f"analysis = analyze({str(log)!r})\n"
              "assert analysis.timeline.steps_logged > 16_384, analysis.timeline\n"
              "assert '| step |' in render(analysis, 'md')\n"
              "print('pandas' in sys.modules, 'pyarrow.compute' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def test_arrow_floats_with_nulls_are_read_without_pandas():
    script = ("import sys\n"
              "import numpy as np, pyarrow as pa\n"
              "from forensics.metrics.spans import _floats\n"
              "valid = np.packbits(np.array([1, 0, 1, 1], dtype=bool), bitorder='little')\n"
              "data = np.array([9.0, 1.0, 2.0, 3.0, 4.0])\n"
              "array = pa.Array.from_buffers(pa.float64(), 4, [pa.py_buffer(valid),\n"
              "                              pa.py_buffer(data[1:])])\n"
              "print(_floats(array).tolist(), _floats(array.slice(2)).tolist(),\n"
              "      'pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert out.stdout.split() == ["[1.0,", "nan,", "3.0,", "4.0]", "[3.0,", "4.0]", "False"], \
        out.stderr[-2000:]
