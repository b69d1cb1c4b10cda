"""Every kind of input, good and bad: compressed files, folders, stdin and junk."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os

import pytest
import zstandard
from click.testing import CliRunner

from forensics import analyze
from forensics.cli import cli
from forensics.errors import InputError
from forensics.inputs import sources
from forensics.inputs.sources import ReadStatus, Source, read_blocks

LOG = (b"{'loss': 1.0, 'epoch': 0.1}\n"
       b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")


@pytest.mark.parametrize(("suffix", "compress"), [
    (".log.gz", gzip.compress), (".log.bz2", bz2.compress), (".log.xz", lzma.compress),
    (".log.zst", lambda b: zstandard.ZstdCompressor().compress(b)), (".log", lambda b: b),
])
def test_compressed_inputs(tmp_path, suffix, compress):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(compress(LOG))
    analysis = analyze(path)
    assert analysis.root_cause.finding.signature == "cuda-oom"
    assert analysis.root_cause.finding.first.line == 2


def run(*args, stdin=None):
    return CliRunner().invoke(cli, ["analyze", "--format", "json", *args], input=stdin)


def test_stdin():
    result = run("-", stdin=LOG)
    assert result.exit_code == 1
    assert '"signature": "cuda-oom"' in result.output


def test_job_folder_picks_logs_and_skips_binaries(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "slurm-123.out").write_bytes(LOG)
    (tmp_path / "job" / "model.bin").write_bytes(b"\x00\x01" * 100)
    (tmp_path / "job" / "weird.log").write_bytes(b"\x00\x00\x00junk" * 50)
    (tmp_path / "job" / "notes.md").write_text("CUDA out of memory is discussed here")
    analysis = analyze(tmp_path / "job")
    names = [s.name for s in analysis.sources]
    assert names[0].endswith("slurm-123.out")
    assert not any(n.endswith(("model.bin", "notes.md")) for n in names)
    assert any("weird.log: skipped, looks like binary" in p for s in analysis.sources
               for p in s.problems)


def test_missing_path_exits_3_with_one_line():
    result = CliRunner().invoke(cli, ["analyze", "/no/such/file.log"])
    assert result.exit_code == 3
    assert result.output.strip().count("\n") == 0
    assert "no such file or folder" in result.output


def test_missing_path_raises_in_python():
    with pytest.raises(InputError):
        analyze("/no/such/file.log")


def test_folder_without_logs(tmp_path):
    result = run(str(tmp_path))
    assert result.exit_code == 3
    assert "no log files found" in result.output


def test_empty_file(tmp_path):
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    result = run(str(path))
    assert result.exit_code == 3
    assert "empty file" in result.output


def test_truncated_gzip_reports_what_was_read(tmp_path):
    data = gzip.compress(b"step\n" * 20000 + LOG * 3 + b"tail\n" * 20000)
    path = tmp_path / "cut.log.gz"
    path.write_bytes(data[: len(data) - 40])
    result = run(str(path))
    assert result.exit_code == 3
    assert '"signature": "cuda-oom"' in result.output
    assert "truncated or corrupt gzip" in result.output


def test_invalid_utf8_is_replaced_and_noted(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_bytes(b"\xff\xfe\xfa garbage \x80\x81\n" + LOG
                     + b"RuntimeError: bad \xc3\x28 byte\n")
    result = run(str(path))
    assert result.exit_code == 1
    assert '"signature": "cuda-oom"' in result.output
    assert "invalid UTF-8" in result.output


def test_binary_junk_is_flagged_and_still_scanned(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes(range(256)) * 8 + b"\n" + LOG)
    result = run(str(path))
    assert result.exit_code == 3
    assert "looks like binary data" in result.output
    assert '"signature": "cuda-oom"' in result.output


def test_huge_line_without_newline_streams(tmp_path):
    path = tmp_path / "oneline.log"
    with open(path, "wb") as fh:
        for _ in range(40):
            fh.write(b"x" * (1 << 20))
        fh.write(b" RuntimeError: CUDA error: an illegal memory access was encountered")
    analysis = analyze(path)
    assert analysis.sources[0].bytes_read > 40 << 20
    assert any("scanned in pieces" in p for p in analysis.sources[0].problems)


def _lines(count: int, long_every: int | None = None) -> bytes:
    """Lines of up to 100 bytes, the last of every `long_every` 3,000 bytes long."""
    return b"".join(b"%d %s\n" % (i, b"x" * (
        3000 if long_every and i % long_every == long_every - 1 else i % 97))
        for i in range(count))


@pytest.mark.parametrize("long_every", [7, 50, None])
def test_a_plain_file_is_cut_at_line_ends_without_a_second_copy(tmp_path, monkeypatch,
                                                                 long_every):
    """A plain file's blocks end at a newline and are read to it (no block is longer than
    the block size), except where no newline is near the end of a piece: then the piece's
    tail waits for the next one. Every way gives back the file, cut only at line ends."""
    monkeypatch.setattr(sources, "LINE_END_WINDOW", 1024)
    data = _lines(20_000, long_every)
    path = tmp_path / "train.log"
    path.write_bytes(data)
    size = 16 * 1024
    blocks = list(read_blocks(Source("train.log", path=path), ReadStatus(), size))
    assert b"".join(blocks) == data
    assert all(block.endswith(b"\n") for block in blocks)
    if long_every is None:  # a newline in every window: each block read to it, none longer
        assert max(map(len, blocks)) <= size
    assert len(blocks) >= len(data) // (2 * size)
    piped = list(read_blocks(Source("train.log", data=data), ReadStatus(), size))
    assert b"".join(piped) == data and all(block.endswith(b"\n") for block in piped)


def test_a_block_size_under_the_window_still_reads_forward(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(_lines(300))
    blocks = list(read_blocks(Source("train.log", path=path), ReadStatus(), 512))
    assert b"".join(blocks) == path.read_bytes()
    assert all(0 < len(block) <= 512 for block in blocks)


def test_without_pread_a_plain_file_is_read_as_before(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "pread")  # Windows
    data = _lines(5_000)
    path = tmp_path / "train.log"
    path.write_bytes(data)
    status = ReadStatus()
    blocks = list(read_blocks(Source("train.log", path=path), status, 4096))
    assert b"".join(blocks) == data and status.problems == []
    assert all(block.endswith(b"\n") for block in blocks)


def test_utf16_is_told_from_a_first_piece_cut_at_a_line_end(tmp_path):
    """A UTF-16 log whose first line is empty: the first piece is cut at a line end, yet
    holds enough of the file to tell UTF-16 by."""
    text = "\n" + "step 1 loss 2.0 " * 2_000 + "\ntorch.OutOfMemoryError: CUDA out of memory.\n"
    path = tmp_path / "train.log"
    path.write_bytes(text.encode("utf-16"))
    blocks = list(read_blocks(Source("train.log", path=path), ReadStatus(), 16 * 1024))
    assert b"".join(blocks).decode("utf-8") == text


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    path = tmp_path / "secret.log"
    path.write_bytes(LOG)
    path.chmod(0)
    result = run(str(path))
    assert result.exit_code == 3
    assert "permission denied" in result.output


def test_user_files_are_left_untouched(tmp_path):
    path = tmp_path / "train.log.gz"
    data = gzip.compress(LOG)
    path.write_bytes(data)
    before = os.stat(path)
    analyze(path)
    assert path.read_bytes() == data
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
