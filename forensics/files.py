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


CACHE_ENV = "FORENSICS_CACHE_DIR"  # where compiled data is kept; empty: nowhere


def cache_dir() -> Path | None:
    """The folder for data forensics compiles and may reuse in a later run
    (`$FORENSICS_CACHE_DIR`, else `$XDG_CACHE_HOME/forensics` or `~/.cache/forensics`),
    or None when caching is turned off (`FORENSICS_CACHE_DIR=`)."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "forensics"


def read_cached(name: str) -> bytes | None:
    """A cache file's bytes, or None when there is none (or it cannot be read)."""
    folder = cache_dir()
    try:
        return None if folder is None else (folder / name).read_bytes()
    except OSError:
        return None


def write_cached(name: str, data: bytes) -> None:
    """Keep `data` in the cache, atomically; a cache that cannot be written is skipped."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with replacing(folder / name) as temporary:
            temporary.write_bytes(data)
    except OSError:
        return
