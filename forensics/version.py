"""The version of forensics (reports and scan caches carry it)."""

__version__ = "0.1.0"
