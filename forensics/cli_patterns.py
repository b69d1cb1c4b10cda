"""`forensics patterns list|show|check`: the signature catalog."""

from __future__ import annotations

import difflib
import sys

import click

from forensics.cli_common import exit_codes, fail, patterns_option, user_catalog
from forensics.errors import ExitCode, UsageError

LIST_EXIT_CODES = exit_codes(ok="listed", input="a catalog did not load")
SHOW_EXIT_CODES = exit_codes(ok="shown", usage="usage error, or no such signature",
                             input="a catalog did not load")
CHECK_EXIT_CODES = exit_codes(ok="the catalog is clean",
                              input="a problem was found, or a catalog did not load")


def did_you_mean(wrong: str, ids: list[str]) -> str | None:
    """The signature id `wrong` most likely meant (`cuda_oom`, `CUDA-OOM`, `cuda-om` ->
    `cuda-oom`), or None when none is close."""
    wanted = wrong.strip().lower().replace("_", "-").replace(" ", "-")
    if wanted in ids:
        return wanted
    close = difflib.get_close_matches(wanted, ids, n=1, cutoff=0.6)
    return close[0] if close else None


@click.group()
def patterns() -> None:
    """List, show and lint the signature catalog."""


@patterns.command("list", epilog=LIST_EXIT_CODES)
@patterns_option
@click.option("--format", "fmt", type=click.Choice(["table", "lines", "json"]),
              help="table on a terminal; lines (`id<TAB>title`, one per line, nothing cut) "
                   "when piped; json for scripts.")
def patterns_list(pattern_dirs: tuple[str, ...], fmt: str | None) -> None:
    """List every signature."""
    from forensics.report.docs import catalog_json, catalog_lines, catalog_table

    catalog = user_catalog(pattern_dirs)
    fmt = fmt or ("table" if sys.stdout.isatty() else "lines")
    render = {"json": catalog_json, "lines": catalog_lines, "table": catalog_table}[fmt]
    click.echo(render(catalog), nl=False)


@patterns.command("show", epilog=SHOW_EXIT_CODES)
@click.argument("signature_id")
@patterns_option
def patterns_show(signature_id: str, pattern_dirs: tuple[str, ...]) -> None:
    """Show one signature's documentation: cause, fix, examples."""
    catalog = user_catalog(pattern_dirs)
    try:
        signature = catalog.get(signature_id)
    except KeyError:
        close = did_you_mean(signature_id, [s.id for s in catalog.signatures])
        hint = f"did you mean {close!r}?" if close else "see `forensics patterns list`"
        fail(UsageError(f"no signature {signature_id!r}; {hint}"))
        return
    from rich.console import Console
    from rich.markdown import Markdown

    from forensics.report.docs import signature_markdown

    Console().print(Markdown(signature_markdown(signature)))


@patterns.command("check", epilog=CHECK_EXIT_CODES)
@patterns_option
def patterns_check(pattern_dirs: tuple[str, ...]) -> None:
    """Lint the catalog; prints `path: field: reason` lines and exits 3 on any problem."""
    from forensics.lint import check_catalog

    catalog = user_catalog(pattern_dirs, compile_builtin=True)
    problems = check_catalog(catalog)
    for problem in problems:
        click.echo(problem)
    examples = sum(len(s.examples) + len(s.counterexamples) for s in catalog.signatures)
    click.echo(f"{len(catalog.signatures)} signatures, {examples} examples checked, "
               f"{len(problems)} problem(s)")
    sys.exit(int(ExitCode.INPUT if problems else ExitCode.OK))
