"""What every `forensics` click command shares: the error exit, output, the user catalog."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forensics.errors import CatalogError, ForensicsError

patterns_option = click.option("--patterns", "pattern_dirs", multiple=True,
                               type=click.Path(file_okay=False),
                               help="Extra signature folder (repeatable); also "
                                    "FORENSICS_PATTERNS.")


def fail(err: ForensicsError) -> None:
    """Print the error (and a catalog's problems) and exit with its code."""
    click.echo(f"forensics: error: {err}", err=True)
    for problem in err.problems if isinstance(err, CatalogError) else ():
        click.echo(problem, err=True)
    sys.exit(int(err.exit_code))


def write(text: str, output: str | None) -> None:
    """Print `text`, or write it to `output`."""
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")


def user_catalog(pattern_dirs: tuple[str, ...]):
    """The built-in catalog plus FORENSICS_PATTERNS and --patterns folders."""
    from forensics.catalog import load_catalog, user_dirs

    try:
        return load_catalog(*user_dirs(pattern_dirs))
    except ForensicsError as err:
        fail(err)
