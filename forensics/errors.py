"""Errors that reach the user, each with a hint and an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `forensics` command."""

    #: no failure found
    OK = 0
    #: a failure was diagnosed (known or unknown cause)
    FAILURE_FOUND = 1
    #: the command line was wrong
    USAGE = 2
    #: an input could not be read, or a catalog did not load
    INPUT = 3


class ForensicsError(Exception):
    """Base class: a message for the user and the exit code it maps to."""

    exit_code = ExitCode.INPUT

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ForensicsError):
    """A command line that cannot be carried out as given (exit code 2)."""

    exit_code = ExitCode.USAGE


class InputError(ForensicsError):
    """A path that cannot be read as a log."""


class CatalogError(ForensicsError):
    """A signature catalog that does not load; `problems` holds `path: field: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"the signature catalog does not load ({len(problems)} problem(s))")
        self.problems = problems
