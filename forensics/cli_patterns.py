"""`forensics patterns list|show|check`: the signature catalog."""

from __future__ import annotations

import sys

import click

from forensics.cli_common import patterns_option, user_catalog
from forensics.errors import ExitCode


@click.group()
def patterns() -> None:
    """List, show and lint the signature catalog."""


@patterns.command("list")
@patterns_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def patterns_list(pattern_dirs: tuple[str, ...], fmt: str) -> None:
    """List every signature."""
    from forensics.report.docs import catalog_json, catalog_table

    catalog = user_catalog(pattern_dirs)
    click.echo(catalog_json(catalog) if fmt == "json" else catalog_table(catalog), nl=False)


@patterns.command("show")
@click.argument("signature_id")
@patterns_option
def patterns_show(signature_id: str, pattern_dirs: tuple[str, ...]) -> None:
    """Show one signature's documentation: cause, fix, examples."""
    catalog = user_catalog(pattern_dirs)
    try:
        signature = catalog.get(signature_id)
    except KeyError:
        click.echo(f"forensics: error: no signature {signature_id!r} "
                   "(see `forensics patterns list`)", err=True)
        sys.exit(int(ExitCode.USAGE))
    from rich.console import Console
    from rich.markdown import Markdown

    from forensics.report.docs import signature_markdown

    Console().print(Markdown(signature_markdown(signature)))


@patterns.command("check")
@patterns_option
def patterns_check(pattern_dirs: tuple[str, ...]) -> None:
    """Lint the catalog; prints `path: field: reason` lines and exits 3 on any problem."""
    from forensics.lint import check_catalog

    catalog = user_catalog(pattern_dirs)
    problems = check_catalog(catalog)
    for problem in problems:
        click.echo(problem)
    examples = sum(len(s.examples) + len(s.counterexamples) for s in catalog.signatures)
    click.echo(f"{len(catalog.signatures)} signatures, {examples} examples checked, "
               f"{len(problems)} problem(s)")
    sys.exit(int(ExitCode.INPUT if problems else ExitCode.OK))
