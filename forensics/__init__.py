"""forensics: a post-mortem analyzer for ML training runs.

    >>> import forensics
    >>> analysis = forensics.analyze("train.log")          # doctest: +SKIP
    >>> analysis.to_dict()["root_cause"]["signature"]       # doctest: +SKIP
    'cuda-oom'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forensics.version import __version__

if TYPE_CHECKING:
    from forensics.catalog import load_catalog
    from forensics.pipeline import analyze

__all__ = ["__version__", "analyze", "load_catalog"]


def __getattr__(name: str) -> Any:
    """`analyze` and `load_catalog` are imported on first use, so that the command starts
    (and answers Ctrl-C) before the pipeline is loaded."""
    if name == "analyze":
        from forensics.pipeline import analyze

        return analyze
    if name == "load_catalog":
        from forensics.catalog import load_catalog

        return load_catalog
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
