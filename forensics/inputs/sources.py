"""Find a job's log files, open them (compressed or not, or stdin) and stream their bytes.

This is the only module that reads files. Blocks end at a newline, so no line is split
between blocks, except a line longer than the block size, which is cut into pieces.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from forensics.errors import InputError
from forensics.inputs.layouts import (
    METRIC_FILES,
    NAMED_RANK,
    TORCHRUN_RANK_FILE,
    artifact_content,
    checkpoint_step,
    is_log_name,
)

BLOCK_SIZE = 8 * 1024 * 1024  # read at once: two blocks are held while one is prepared
LONG_LINE_BLOCKS = 2  # a line longer than this many blocks (16 MiB) is scanned in pieces
TAIL_BYTES = 64 * 1024
COMPRESSED_PIECE = 64 * 1024
LINE_END_WINDOW = 64 * 1024  # where a plain file's block is cut: its last newline in here
SNIFF_BYTES = 8192

GIB = 1024 ** 3
MAX_DECOMPRESSED = 20 * GIB
MAX_RATIO = 1000
RATIO_AFTER = 64 * 1024 * 1024  # below this much output, any ratio is fine
JSON_LIMIT = 256 * 1024 * 1024
ERROR_JSON_LIMIT = 8 * 1024 * 1024
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How far a compressed input is expanded: at most `max_bytes` of output, and, past
    `ratio_after` bytes, at most `max_ratio` times the compressed bytes read (a
    decompression bomb stops early)."""

    max_bytes: int = MAX_DECOMPRESSED
    max_ratio: float = MAX_RATIO
    ratio_after: int = RATIO_AFTER


@dataclass(frozen=True, slots=True)
class Source:
    """One input: a file path, bytes held in memory, or stdin when both are None."""

    name: str
    path: Path | None = None
    data: bytes | None = None
    rank: int | None = None  # what the file's location says about its writer
    local_rank: int | None = None
    time: str | None = None
    content: str = "log"  # log | trainer-state | wandb-summary | metrics-csv | checkpoint | ...
    limits: ReadLimits = ReadLimits()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", printable_name(self.name))


def stored_size(source: Source) -> int | None:
    """The bytes a source holds where that is known before reading it: a file's size on
    disk (a compressed one expands to more) or the data in memory; None for stdin or a file
    that cannot be looked at (it is read, and reported, in its turn)."""
    if source.data is not None:
        return len(source.data)
    if source.path is None:
        return None
    try:
        return source.path.stat().st_size
    except OSError:
        return None


def printable_name(name: str) -> str:
    """A file name as text every output can hold: bytes that are not UTF-8 (which Python
    keeps as lone surrogates) are written as `\\xff`."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class ReadStatus:
    """What happened while reading one source (filled in as blocks are read)."""

    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    long_lines: int = 0


def discover(paths: tuple[str, ...] | list[str],
             limits: ReadLimits | None = None) -> tuple[list[Source], list[str]]:
    """Turn command-line paths into sources; returns (sources, problems).

    A file is taken whatever its name (a symlink named on the command line is followed); a
    folder contributes the regular log files under it (symlinks inside are not followed);
    `-` is stdin. A path that does not exist is a problem, and the rest is still read;
    InputError only when none of the paths exists.
    """
    sources: list[Source] = []
    problems: list[str] = []
    missing = []
    for raw in paths:
        if raw == "-":
            sources.append(Source("<stdin>"))
            continue
        path = Path(raw)
        if not path.exists():
            missing.append(f"{raw}: no such file or folder")
            continue
        if path.is_dir():
            found = _logs_in_folder(path, problems)
            if not found:
                problems.append(f"{raw}: no log files found in this folder")
            sources.extend(found)
        elif _device(path):
            problems.append(f"{raw}: a device, not a log file; skipped")
        else:
            if _looks_binary(path):
                problems.append(f"{raw}: looks like binary data, not a text log; "
                                "scanned anyway")
            sources.append(_source(str(path), path, problems))
    if missing and len(missing) == len(paths):
        raise InputError("; ".join(missing))
    if limits is not None:
        sources = [replace(source, limits=limits) for source in sources]
    return sources, missing + problems


def _source(name: str, path: Path, problems: list[str]) -> Source:
    """A Source for one file, with the rank its location implies; error.json files are
    rendered to the traceback text they hold."""
    posix = path.as_posix()
    local_rank = rank = None
    found = TORCHRUN_RANK_FILE.search(posix)
    if found is not None:
        # torchrun numbers these folders by local rank; on one node that is also the rank
        local_rank = rank = int(found.group(1))
    else:
        named = NAMED_RANK.search(path.name)
        rank = int(named.group(1)) if named else None
    if path.name == "error.json":
        return _error_json(name, path, local_rank, problems)
    if path.name in METRIC_FILES:
        return Source(name, path, content=METRIC_FILES[path.name])
    if (kind := artifact_content(path.name)) is not None:
        return Source(name, path, content=kind)
    return Source(name, path, rank=rank, local_rank=local_rank)


# what an error file with no text in it is read as: one blank line, so that it is not also
# reported as an empty file
NOTHING_READ = b"\n"


def _error_json(name: str, path: Path, local_rank: int | None, problems: list[str]) -> Source:
    """torchelastic's error file: the failing worker's own traceback and its time."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(ERROR_JSON_LIMIT + 1)
        if len(raw) > ERROR_JSON_LIMIT:
            raise ValueError("larger than 8 MiB")
        data = json.loads(raw.decode("utf-8", "replace"), parse_int=_json_int)
    except RecursionError:
        problems.append(f"{name}: not a readable torchelastic error file (nested too deeply)")
        return Source(name, data=NOTHING_READ, rank=local_rank, local_rank=local_rank)
    except (OSError, ValueError) as err:
        problems.append(f"{name}: not a readable torchelastic error file ({err})")
        return Source(name, data=NOTHING_READ, rank=local_rank, local_rank=local_rank)
    # only strings are taken from it: any other value may be nested too deep to print
    message = data.get("message", data) if isinstance(data, dict) else data
    text, stamp = "", data.get("timestamp") if isinstance(data, dict) else None
    if isinstance(message, dict):
        extra = message.get("extraInfo")
        extra = extra if isinstance(extra, dict) else {}
        text = callstack if isinstance(callstack := extra.get("py_callstack"), str) else ""
        stamp = extra.get("timestamp", stamp)
        if not text.strip():
            text = inner if isinstance(inner := message.get("message"), str) else ""
    elif isinstance(message, str):
        text = message
    time = None
    if isinstance(stamp, int | str) and (digits := str(stamp)).isdecimal() and len(digits) < 12:
        time = datetime.fromtimestamp(int(digits)).isoformat(sep="_")
    return Source(name, data=text.encode("utf-8") or NOTHING_READ, rank=local_rank,
                  local_rank=local_rank, time=time)


def _logs_in_folder(root: Path, problems: list[str]) -> list[Source]:
    found: list[Source] = []

    def on_error(err: OSError) -> None:
        problems.append(f"{err.filename}: {err.strerror or err}")

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        dirs.sort()
        files = [name for name in files if regular_file(Path(folder) / name)]
        checkpoints = sorted((step, name) for name in dirs
                             if (step := checkpoint_step(name)) is not None)
        for _, name in checkpoints:
            path = Path(folder) / name
            found.append(Source(str(path.relative_to(root.parent)), path, content="checkpoint"))
            dirs.remove(name)  # a checkpoint holds weights; only its trainer state is read
        if checkpoints:
            state = Path(folder) / checkpoints[-1][1] / "trainer_state.json"
            if state.is_file():
                found.append(Source(str(state.relative_to(root.parent)), state,
                                    content="trainer-state"))
        for name in sorted(files):
            if (kind := artifact_content(name)) is not None:
                path = Path(folder) / name
                found.append(Source(str(path.relative_to(root.parent)), path, content=kind))
                continue
            if name in METRIC_FILES:
                path = Path(folder) / name
                found.append(Source(str(path.relative_to(root.parent)), path,
                                    content=METRIC_FILES[name]))
                continue
            if not is_log_name(name):
                continue
            path = Path(folder) / name
            if _looks_binary(path):
                problems.append(f"{path}: skipped, looks like binary data")
                continue
            name = str(path.relative_to(root.parent)) if root.parent != root else str(path)
            found.append(_source(name, path, problems))
    return found


def _device(path: Path) -> bool:
    """A character or block device (`/dev/zero`, a disk): endless or not a log. A named pipe
    is read (`<(zcat run.log.gz)` is one)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def regular_file(path: Path) -> bool:
    """A regular file, not a symlink, FIFO or device (those are never opened in a folder)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def read_metric_file(source: Source, report: ReadStatus, form: str) -> tuple[object, str]:
    """A small metric file read whole, and its text: JSON (trainer_state.json,
    wandb-summary.json) by Python's parser, which accepts the NaN and Infinity that
    `json.dumps` writes, or CSV (a metrics.csv) as a list of {column: cell} rows. (None, "")
    and a problem if unreadable."""
    try:
        with open(source.path, "rb") as fh:  # type: ignore[arg-type]
            raw = fh.read(JSON_LIMIT + 1)
        if len(raw) > JSON_LIMIT:
            raise ValueError("larger than 256 MiB")
        report.bytes_read = len(raw)
        text = raw.decode("utf-8", "replace")
        if form == "csv":
            return list(csv.DictReader(io.StringIO(text, newline=""))), text
        return json.loads(text, parse_int=_json_int), text
    except RecursionError:
        report.problems.append(f"{source.name}: not readable JSON (nested too deeply)")
    except (OSError, ValueError, csv.Error) as err:
        report.problems.append(f"{source.name}: not readable {form.upper()} ({err})")
    return None, ""


def _json_int(digits: str) -> int | None:
    """A JSON integer; one past 64 bits is read as null: no step, count or time is that
    large, and Python would not turn it into a float."""
    value = int(digits) if len(digits) <= 21 else None
    return value if value is not None and -(1 << 63) <= value < 1 << 63 else None


def _looks_binary(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    if _compression(head) or is_utf16(head):
        return False
    return sniff_binary(head)


def sniff_binary(head: bytes) -> bool:
    """True when a file's first bytes look like binary data rather than text."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return control > len(head) * 0.3


def _compression(head: bytes) -> str | None:
    for magic, codec in _MAGIC:
        if head.startswith(magic):
            return codec
    return None


def _open_raw(source: Source) -> BinaryIO:
    if source.data is not None:
        return io.BytesIO(source.data)
    if source.path is None:
        return sys.stdin.buffer
    try:
        return open(source.path, "rb")
    except PermissionError as err:
        raise InputError(f"{source.name}: permission denied") from err
    except IsADirectoryError as err:
        raise InputError(f"{source.name}: is a folder") from err
    except OSError as err:
        raise InputError(f"{source.name}: {err.strerror or err}") from err


def _decompressing(raw: BinaryIO) -> tuple[BinaryIO, str | None]:
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
    codec = _compression(buffered.peek(8)[:8])
    if codec == "gzip":
        return gzip.GzipFile(fileobj=buffered), codec
    if codec == "bz2":
        return bz2.BZ2File(buffered), codec
    if codec == "xz":
        return lzma.LZMAFile(buffered), codec
    if codec == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
        return reader, codec  # type: ignore[return-value]
    return buffered, None


def read_blocks(source: Source, report: ReadStatus,
                block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield the source's bytes in blocks that end at a newline.

    A file that cannot be opened yields nothing; read errors after the start (a truncated
    archive, an I/O error) and a decompression past `source.limits` end the stream. Each is
    recorded in `report.problems`; what was read before is still yielded.
    """
    try:
        raw = _open_raw(source)
    except InputError as err:
        report.problems.append(str(err))
        return
    try:
        stream, codec = _decompressing(raw)
        pending = b""
        for chunk in _utf8(_chunks(stream, codec, block_size, source, report, raw)):
            report.bytes_read += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut < 0:  # a line longer than the chunk: gathered up to LONG_LINE_BLOCKS
                pending = pending + chunk if pending else chunk
                if len(pending) >= LONG_LINE_BLOCKS * block_size:
                    report.long_lines += 1
                    yield pending
                    pending = b""
                continue
            # the block is copied once (not three times: the chunk, then pending + chunk,
            # then its part up to the newline), and held once while it is read
            block = chunk if not pending and cut + 1 == len(chunk) else \
                b"".join((pending, memoryview(chunk)[:cut + 1]))
            pending = chunk[cut + 1:]
            del chunk
            yield block
            del block
        if pending:
            yield pending
    finally:
        if source.path is not None or source.data is not None:
            raw.close()


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def is_utf16(head: bytes) -> bool:
    """Text in UTF-16: a byte-order mark, then mostly characters of one byte's range, whose
    other byte is zero (a UTF-8 file that merely starts with 0xFF 0xFE is not)."""
    if not head.startswith(UTF16_BOMS):
        return False
    sample = head[2:514]
    zero_at = 1 if head.startswith(b"\xff\xfe") else 0  # little endian: the high byte is 2nd
    units = len(sample) // 2
    return units > 0 and sample[zero_at::2].count(0) >= units * 0.6


def _utf8(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks as they are, or, when the text starts with a UTF-16 byte-order mark (what
    PowerShell's `>` writes), decoded and given as UTF-8."""
    first = next(chunks, b"")
    if not is_utf16(first):
        if first:
            yield first
        yield from chunks
        return
    decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    yield decoder.decode(first).encode("utf-8")
    for chunk in chunks:
        yield decoder.decode(chunk).encode("utf-8")
    yield decoder.decode(b"", final=True).encode("utf-8")


def _past_limits(limits: ReadLimits, expanded: int, raw: BinaryIO) -> str | None:
    """Why decompression must stop here, or None: past the byte budget, or expanding more
    than `max_ratio` times the compressed bytes read so far."""
    if expanded > limits.max_bytes:
        return (f"decompressed past {limits.max_bytes / GIB:g} GiB "
                "(--max-decompressed raises the limit)")
    if expanded < limits.ratio_after:
        return None
    try:
        consumed = max(raw.tell(), 1)
    except (OSError, ValueError):
        return None  # a pipe: only the byte budget applies
    if expanded > consumed * limits.max_ratio:
        return (f"expands more than {limits.max_ratio:g}:1, like a decompression bomb "
                "(--max-ratio raises the limit)")
    return None


def _file_descriptor(raw: BinaryIO) -> int | None:
    """The descriptor of a regular file (one that can be read at any offset, where the
    system has `pread`), else None."""
    if not hasattr(os, "pread"):  # Windows
        return None
    try:
        descriptor = raw.fileno()
        return descriptor if stat.S_ISREG(os.fstat(descriptor).st_mode) else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _to_line_end(stream: BinaryIO, descriptor: int, size: int) -> int:
    """How many bytes to read from a plain file so that the piece ends at a newline: up to
    the last one in the piece's final `LINE_END_WINDOW` bytes (its second half at most, so
    that a first piece holds enough to tell UTF-16 by), looked at before reading (the piece
    is then a block as it is, not copied again to cut it); `size` when there is none there,
    or when the file ends before."""
    span = min(LINE_END_WINDOW, size // 2)
    try:
        window = os.pread(descriptor, span, stream.tell() + size - span)
    except OSError:
        return size
    cut = window.rfind(b"\n")
    return size - span + cut + 1 if len(window) == span and cut >= 0 else size


def _chunks(stream: BinaryIO, codec: str | None, block_size: int, source: Source,
            report: ReadStatus, raw: BinaryIO) -> Iterator[bytes]:
    """Read `block_size` pieces; compressed streams are read in small pieces so that a
    truncated archive loses at most one piece, and stop at the source's limits."""
    piece = block_size if codec is None else COMPRESSED_PIECE
    descriptor = _file_descriptor(raw) if codec is None else None
    buffer = bytearray()
    expanded = 0
    while True:
        try:
            chunk = stream.read(piece if descriptor is None else
                                _to_line_end(stream, descriptor, piece))
        except Exception as err:  # EOFError, OSError, lzma.LZMAError, zstd.ZstdError
            what = f"{codec} data" if codec else "file"
            report.problems.append(f"{source.name}: truncated or corrupt {what} ({err}); "
                                   "analyzed what could be read")
            chunk = b""
        if codec is not None and chunk:
            expanded += len(chunk)
            if (stop := _past_limits(source.limits, expanded, raw)) is not None:
                report.problems.append(f"{source.name}: {stop}; analyzed the first "
                                       f"{expanded // 2**20} MiB")
                chunk = b""
        if not chunk:
            if buffer:
                yield bytes(buffer)
            return
        if codec is None:
            yield chunk
            continue
        buffer += chunk
        if len(buffer) >= block_size:
            yield bytes(buffer)
            buffer.clear()
