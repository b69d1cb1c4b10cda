"""How the run ended, from the root cause and what the logs say about its progress."""

from __future__ import annotations

from forensics.model import RootCause, Verdict


def decide_verdict(root: RootCause | None, root_verdict: Verdict, completed: bool,
                   progressed: bool) -> Verdict:
    """With a root cause, the verdict its signature gives (`failed`, or `interrupted` for a
    run stopped by hand or a closed terminal); else `completed` when a completion line or a
    final summary was printed; else `interrupted` when it was training and the log just
    stops; else `unknown`."""
    if root is not None:
        return root_verdict
    if completed:
        return Verdict.COMPLETED
    if progressed:
        return Verdict.INTERRUPTED
    return Verdict.UNKNOWN
