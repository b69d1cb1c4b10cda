"""The catalog as documentation: one signature (`forensics patterns show`) and the list of
all of them (`forensics patterns list`). A catalog may be a user's (`--patterns`): its cause,
fix and references are Markdown on purpose, its other fields go in through
`forensics.text`."""

from __future__ import annotations

import json

from forensics.catalog import Catalog, Signature
from forensics.stacks import advice
from forensics.text import md_code, md_fence, md_text, scrub, term_safe


def signature_markdown(signature: Signature) -> str:
    """Fixed sections, as ruff's rule docs have: what it is, cause, fix, examples."""
    lines = [
        f"# {md_text(signature.id)}: {md_text(signature.title)}",
        "",
        f"category **{signature.category}** · severity **{signature.severity}** · "
        f"priority **{signature.priority}**"
        + (f" · symptom of {', '.join(md_code(s) for s in signature.symptom_of)}"
           if signature.symptom_of else ""),
        "",
        "## Why it happens",
        "",
        signature.cause,
        "",
        "## What to change",
        "",
        *(f"- {item}" for item in advice(signature.fix, (), {})),
        "",
        "## Example lines",
        "",
    ]
    for example in signature.examples:
        lines += [md_fence(example), ""]
    if signature.counterexamples:
        lines += ["## Near misses (not this failure)", ""]
        for example in signature.counterexamples:
            lines += [md_fence(example), ""]
    if signature.references:
        lines += ["## References", ""] + [f"- {ref}" for ref in signature.references]
    return "\n".join(lines) + "\n"


def catalog_json(catalog: Catalog) -> str:
    """Every signature's id, title, category, severity, priority, relations and file."""
    rows = [{"id": s.id, "title": s.title, "category": s.category, "severity": s.severity.value,
             "priority": s.priority, "symptom_of": list(s.symptom_of), "path": str(s.path)}
            for s in catalog.signatures]
    return json.dumps(scrub(rows), indent=2) + "\n"


def catalog_lines(catalog: Catalog) -> str:
    """Every signature as `id<TAB>title`, one per line, nothing cut (for pipes and grep)."""
    return "".join(f"{term_safe(s.id)}\t{term_safe(s.title)}\n" for s in catalog.signatures)


def catalog_table(catalog: Catalog, width: int | None = None) -> str:
    """Every signature as a table for the terminal."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    for column in ("id", "category", "severity", "priority", "title"):
        table.add_column(column)
    for s in catalog.signatures:
        table.add_row(Text(term_safe(s.id)), Text(term_safe(s.category)), s.severity.value,
                      str(s.priority), Text(term_safe(s.title)))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width)
    console.print(table)
    console.print(f"{len(catalog.signatures)} signatures")
    return buffer.getvalue()
