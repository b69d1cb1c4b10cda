"""Output files written safely: into a temporary file of this process beside the target,
then renamed over it, so that a reader (or a second forensics writing the same file) never
sees half a file, and an interrupted write leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_beside(target: Path) -> Path:
    """A new empty file in `target`'s folder that no other process is using, with the
    permissions a plain `open(target, "w")` would have given (mkstemp's are 0600)."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
    finally:
        os.close(handle)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` that replaces `target` when the block ends without an
    error (and is removed when it does not)."""
    temporary = temporary_beside(target)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
