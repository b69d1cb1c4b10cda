"""What every `forensics` click command shares: the error exit, output, the user catalog."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from forensics.errors import CatalogError, ForensicsError, InputError, UsageError
from forensics.files import replacing
from forensics.redact import redact_text
from forensics.text import term_safe

patterns_option = click.option("--patterns", "pattern_dirs", multiple=True,
                               type=click.Path(file_okay=False),
                               help="Extra signature folder (repeatable); also "
                                    "FORENSICS_PATTERNS.")


def exit_codes(**meanings: str) -> str:
    """A command's help epilog: its own exit codes (`ok=`, `failure=`, `input=`), and the
    two every command shares (2 usage error, 130 interrupted)."""
    rows = [("0", meanings["ok"])]
    if "failure" in meanings:
        rows.append(("1", meanings["failure"]))
    rows.append(("2", meanings.get("usage", "usage error")))
    if "input" in meanings:
        rows.append(("3", meanings["input"]))
    rows.append(("130", "interrupted (Ctrl-C)"))
    return "\b\nExit codes:\n" + "".join(f"  {code:<4} {text}\n" for code, text in rows)


def existing(paths: Iterable[str]) -> None:
    """InputError (exit 3) for a path that does not exist."""
    for path in paths:
        if path != "-" and not os.path.lexists(path):
            fail(InputError(f"{path}: no such file or folder"))


def exists_as_folders(paths: Iterable[str]) -> None:
    """InputError (exit 3) for a path that does not exist or is not a folder."""
    for path in paths:
        existing([path])
        if not os.path.isdir(path):
            fail(InputError(f"{path}: not a folder"))


def limits_options(command):
    """`--max-decompressed` and `--max-ratio`: how far a compressed log is expanded."""
    command = click.option("--max-ratio", type=click.FloatRange(min=1), default=1000,
                           show_default=True,
                           help="Stop expanding a compressed log past this many bytes out "
                                "per byte in (a decompression bomb).")(command)
    return click.option("--max-decompressed", "max_gib", type=click.FloatRange(min=0),
                        default=20, show_default=True, metavar="GIB",
                        help="Stop expanding a compressed log past this many GiB.")(command)


def read_limits(max_gib: float, max_ratio: float):
    """The `ReadLimits` the two options ask for."""
    from forensics.inputs.sources import GIB, ReadLimits

    return ReadLimits(max_bytes=int(max_gib * GIB), max_ratio=max_ratio)


def fail(err: ForensicsError) -> None:
    """Print the error (and a catalog's problems) and exit with its code."""
    warn(f"error: {err}")
    for problem in err.problems if isinstance(err, CatalogError) else ():
        click.echo(term_safe(redact_text(problem)), err=True)
    sys.exit(int(err.exit_code))


def warn(message: str) -> None:
    """`forensics: message` on stderr, its secrets masked and terminal controls dropped (a
    message may quote a path or a line)."""
    click.echo(term_safe(redact_text(f"forensics: {message}")), err=True)


def check_output(output: str | None, inputs: Iterable[Path | None] = ()) -> None:
    """A usage error (exit 2) when `-o FILE` cannot be written as asked: its folder does not
    exist, it is a folder, or it is one of the inputs (forensics never writes over a log)."""
    if output is None:
        return
    target = Path(output)
    if target.is_dir():
        fail(UsageError(f"-o {output}: is a folder"))
    if not target.parent.is_dir():
        fail(UsageError(f"-o {output}: the folder {target.parent} does not exist"))
    if not target.exists():
        return
    for path in inputs:  # None: standard input, which may be a file redirected in
        if _same_file(path, target):
            fail(UsageError(f"-o {output}: is one of the inputs; forensics never writes "
                            "over a log"))


def _same_file(a: Path | None, b: Path) -> bool:
    """Whether `a` (None: standard input) and `b` are one file."""
    try:
        mine = os.fstat(sys.stdin.fileno()) if a is None else os.stat(a)
        theirs = os.stat(b)
    except (OSError, ValueError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def write(text: str, output: str | None = None, keep_secrets: bool = False) -> None:
    """Print `text`, or write it to `output` (atomically). Every command's text output goes
    through here, so this is where its secrets are masked, whatever produced the text
    (`keep_secrets`: `analyze --no-redact`)."""
    if not keep_secrets:
        text = redact_text(text)
    if output is None:
        click.echo(text, nl=False)
        return
    write_file(text.encode("utf-8"), output)


def write_file(data: bytes, output: str) -> None:
    """Write `data` to `output`: a regular file (or a symlink to one) atomically, so a
    reader never sees half of it; a device, a pipe or `/dev/stdout` directly, never replaced.
    A folder that cannot be written is a usage error. The caller has masked its secrets."""
    target = Path(output)
    try:
        if target.exists() and not target.resolve().is_file():
            with open(target, "wb") as sink:
                sink.write(data)
            return
        with replacing(target.resolve() if target.is_symlink() else target) as temporary:
            temporary.write_bytes(data)
    except OSError as err:
        fail(UsageError(f"-o {output}: {err.strerror or err}"))


def user_catalog(pattern_dirs: tuple[str, ...], compile_builtin: bool = False):
    """The built-in catalog plus FORENSICS_PATTERNS and --patterns folders (`compile_builtin`:
    the built-in regexes compiled and checked now, not when first used)."""
    from forensics.catalog import load_catalog, user_dirs

    try:
        return load_catalog(*user_dirs(pattern_dirs), compile_builtin=compile_builtin)
    except ForensicsError as err:
        fail(err)
