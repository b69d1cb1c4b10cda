"""A signature's documentation, as `forensics patterns show` prints it."""

from __future__ import annotations

from forensics.catalog import Signature


def signature_markdown(signature: Signature) -> str:
    """Fixed sections, as ruff's rule docs have: what it is, cause, fix, examples."""
    lines = [
        f"# {signature.id}: {signature.title}",
        "",
        f"category **{signature.category}** · severity **{signature.severity}** · "
        f"priority **{signature.priority}**"
        + (f" · symptom of {', '.join(f'`{s}`' for s in signature.symptom_of)}"
           if signature.symptom_of else ""),
        "",
        "## Why it happens",
        "",
        signature.cause,
        "",
        "## What to change",
        "",
        signature.fix,
        "",
        "## Example lines",
        "",
    ]
    for example in signature.examples:
        lines += ["```text", example, "```", ""]
    if signature.counterexamples:
        lines += ["## Near misses (not this failure)", ""]
        for example in signature.counterexamples:
            lines += ["```text", example, "```", ""]
    if signature.references:
        lines += ["## References", ""] + [f"- {ref}" for ref in signature.references]
    return "\n".join(lines) + "\n"
