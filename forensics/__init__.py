"""forensics: a post-mortem analyzer for ML training runs.

    >>> import forensics
    >>> analysis = forensics.analyze("train.log")          # doctest: +SKIP
    >>> analysis.to_dict()["root_cause"]["signature"]       # doctest: +SKIP
    'cuda-oom'
"""

from forensics.catalog import load_catalog
from forensics.pipeline import analyze
from forensics.version import __version__

__all__ = ["__version__", "analyze", "load_catalog"]
